"""`gprune-edge build` end to end on a tiny model: prune -> GGUF + ONNX (pruned and
dense) -> verify on llama.cpp and onnxruntime -> gate, and its exit codes; the budget
search; a killed build continued by the same command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from export_helpers import needs_node
from tiny import tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from gprune_edge.build import BuildConfig
from gprune_edge.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args)])


def write_target(path, gate, artifacts=("gguf:f16", "onnx:fp32"), **extra):
    path.write_text(json.dumps({"name": "tiny-device", "description": "test target", "artifacts": list(artifacts),
                                "align": 8, "threads": 1, "context_length": 256, "sparsity": 0.3, "gate": gate,
                                **extra}))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    tiny_model("llama").save_pretrained(root / "tiny")
    tiny_tokenizer().save_pretrained(root / "tiny")
    text = root / "calib.txt"
    text.write_text("\n\n".join("".join(chr(33 + (i * 7 + j) % 90) for j in range(300)) for i in range(40)))
    target = str(write_target(root / "target.json", {"max_perplexity_ratio": 1e6}))
    config = BuildConfig.from_dict({
        "target": target,
        "prune": {"model": str(root / "tiny"), "calib": [str(text)], "n_samples": 4, "seq_len": 32},
        "distill_tokens": 256, "distill": {"data": [str(text)], "seq_len": 32, "batch_size": 4, "eval_windows": 2},
        "verify": {"tasks": ["arc_easy"], "limit": 2, "distributions": ["news"], "max_windows": 2, "seq_len": 64,
                   "speed": {"pairs": 1}}})
    (root / "config.json").write_text(json.dumps(config.to_dict()))
    # the first build.json layout: flat, with renamed copies of the stages' fields
    flat = {"target": target, "model": str(root / "tiny"), "calib": [str(text)], "n_samples": 4, "calib_seq_len": 32,
            "prune_options": {"calib_cache": str(root / "cache")}, "tasks": ["arc_easy"], "limit": 2,
            "distributions": ["news"], "windows": 2, "eval_seq_len": 64, "pairs": 1, "threads": 1}
    (root / "flat.json").write_text(json.dumps(flat))
    return root


def test_a_build_config_of_the_previous_layout_loads_as_the_same_config(setup):
    old, new = BuildConfig.load(setup / "flat.json"), BuildConfig.load(setup / "config.json")
    assert old.distill_tokens == 0 and not old.prune.reconstruct  # it had neither stage: it repeats without them
    same = new.replace(distill_tokens=0, distill=old.distill, prune=new.prune.replace(reconstruct=False))
    assert old == same and old.prune.n_samples == 4 and old.verify.speed.pairs == 1


def test_a_build_json_from_before_recovery_repeats_without_it(setup, tmp_path):
    data = json.loads((setup / "config.json").read_text())
    data["prune"]["version"] = 2
    del data["prune"]["reconstruct"], data["prune"]["reconstruction"], data["distill_tokens"], data["distill"]
    (tmp_path / "build.json").write_text(json.dumps({"config": data}))
    old = BuildConfig.load(tmp_path / "build.json")
    assert old.distill_tokens == 0 and old.prune.reconstruct is False
    assert BuildConfig(target="phone").distill_tokens is None  # a new build: the machine's default budget


def test_build_config_refuses_unknown_keys_in_its_stages(setup):
    data = json.loads((setup / "config.json").read_text())
    data["verify"]["windows"] = 3  # the stage's field is max_windows
    with pytest.raises(GPruneError, match="has no option 'windows'"):
        BuildConfig.from_dict(data)


def test_build_writes_every_artifact_and_passes_the_gate(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--out", out)
    assert result.exit_code == 0, result.output
    assert "gate pass" in result.output
    summary = json.loads((out / "build.json").read_text())
    assert summary["passed"] and summary["verdict"] == "pass"
    assert 0.25 <= summary["prune"]["pruned30"]["sparsity"] <= 0.35
    shipped = [a["artifact"] for a in summary["artifacts"]]
    assert shipped == ["artifacts/pruned30-f16.gguf", "artifacts/pruned30-onnx-fp32"]
    for artifact in summary["artifacts"]:
        assert (out / artifact["artifact"]).exists()
        assert (out / artifact["baseline"]).exists() and "dense" in artifact["baseline"]  # same format
        assert artifact["size_bytes"] < artifact["baseline_size_bytes"]
        assert artifact["export_parity"]["top1_agreement"] >= 0.95
        report = json.loads((out / artifact["report"]).with_suffix(".json").read_text())
        assert report["candidates"][0]["speed"]["ratio"]["decode_tok_s"]["median"] > 0
    recipe = json.loads((out / "models" / "pruned30" / "recipe.json").read_text())
    assert recipe["reconstruct"] is True and recipe["align"] == 8  # the target's alignment
    assert summary["recovery"]["pruned30"]["tokens"] >= 256
    assert (out / "models" / "pruned30-distilled" / "recovery.json").is_file()
    assert {"report.md", "report.html", "frontier.png", "stages.json"} <= {p.name for p in out.iterdir()}
    assert "pruned30-f16.gguf" in result.output and "decode ratio" in result.output  # the terminal table


def test_build_exits_3_when_the_target_budget_is_missed(setup, tmp_path):
    target = write_target(tmp_path / "strict.json", {"min_decode_speedup": 100.0}, artifacts=("gguf:f16",))
    out = tmp_path / "build"
    # --config repeats the saved build; --target overrides it
    result = run("--config", setup / "config.json", "--target", target, "--out", out)
    assert result.exit_code == 3, result.output
    assert "gate fail" in result.output and "decode" in result.output
    assert not json.loads((out / "build.json").read_text())["passed"]


@pytest.mark.parametrize("target_args,message", [
    (["--target", "toaster"], "unknown target 'toaster'"),
    ([], "give --target"),
])
def test_build_bad_input(tmp_path, target_args, message):
    out = tmp_path / "build"
    result = run(*target_args, "--out", out)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_build_rejects_an_unknown_artifact_type_before_pruning(setup, tmp_path):
    target = write_target(tmp_path / "bad.json", {}, artifacts=("gguf:q3_weird",))
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--target", target, "--out", out)
    assert result.exit_code == 1 and "unknown dtype 'q3_weird' for gguf" in result.output
    assert not out.exists()


# ---- budgets ---------------------------------------------------------------------------------------------

def budget_target(tmp_path, sparsities=(0.0, 0.3)):
    return write_target(tmp_path / "search.json", {}, artifacts=("gguf:f16",),
                        search=["gguf:f16", "gguf:q8_0"], search_sparsities=list(sparsities))


def test_budget_build_ships_the_most_accurate_candidate_within_the_budget(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--target", budget_target(tmp_path), "--max-size", 0.1,
                 "--distill-tokens", 0, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "build.json").read_text())
    candidates = summary["candidates"]
    assert [c["label"] for c in candidates] == ["dense-f16.gguf", "dense-q8_0.gguf", "pruned30-f16.gguf",
                                                "pruned30-q8_0.gguf"]
    for c in candidates:  # over the budget: skipped on the (predicted or exact) size, never shipped
        if c["size_bytes"] / 1e6 > 0.1 * 1.05:
            assert c["verdict"].startswith(("skipped", "misses"))
    within = [c for c in candidates if c["perplexity_ratio"] is not None and c["size_bytes"] / 1e6 <= 0.1]
    best = min(within, key=lambda c: c["perplexity_ratio"])
    assert summary["artifacts"][0]["artifact"] == best["artifact"] and best["verdict"] == "chosen: pass"
    assert ("dense" in summary["note"]) == (best["sparsity"] == 0) and summary["note"].lower() in result.output.lower()
    assert (out / "reports" / best["label"] / "report.json").is_file() and (out / "frontier.png").is_file()


def test_a_budget_nothing_can_meet_is_refused_before_pruning(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--target", budget_target(tmp_path), "--max-size", 0.0001,
                 "--out", out)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # above it: progress bars of the dense exports
    assert last.startswith("Error: no artifact can meet size <= 0.0001 MB") and "the smallest is about" in last
    assert not (out / "models").exists()  # nothing was pruned


def test_a_budget_no_measured_candidate_meets_is_refused_with_the_closest_figure(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--target", budget_target(tmp_path, sparsities=[0.0]),
                 "--max-perplexity-ratio", 0.5, "--out", out)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: no candidate meets perplexity ratio <= 0.5; closest: perplexity ratio")
    assert (out / "checks").is_dir() and not (out / "build.json").exists()  # kept for a rerun with a looser budget


def test_a_sparsity_that_contradicts_a_budget_is_refused(setup, tmp_path):
    result = run("--config", setup / "config.json", "--target", budget_target(tmp_path), "--sparsity", 0.1,
                 "--min-decode-speedup", 50, "--out", tmp_path / "build")
    assert result.exit_code == 1 and "at sparsity 0.1 (drop --sparsity" in result.output


# ---- resuming --------------------------------------------------------------------------------------------

def test_a_killed_build_continues_where_it_stopped(setup, tmp_path):
    """SIGKILL during the second export; the same command then redoes neither calibration nor pruning,
    and its artifacts are the uninterrupted build's byte for byte."""
    import hashlib
    import os
    import subprocess
    import sys

    target = write_target(tmp_path / "one.json", {"max_perplexity_ratio": 1e6}, artifacts=("gguf:f16",))
    killer = tmp_path / "killer.py"
    killer.write_text(
        "import os, signal, sys\n"
        "import gprune_edge.build as b\n"
        "real, calls = b.export, []\n"
        "def export(*args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(*args, **kwargs)\n"
        "b.export = export\n"
        "from gprune_edge.cli import cli\n"
        "cli(sys.argv[1:])\n")
    args = ["build", "--config", str(setup / "config.json"), "--target", str(target), "--distill-tokens", "0",
            "--pairs", "1"]
    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, str(killer), *args, "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -9, done.stderr[-2000:]
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert stages["prune pruned30"]["done"] and not (out / "build.json").exists()
    pruned_mtime = (out / "models" / "pruned30" / "model.safetensors").stat().st_mtime_ns

    import gprune.prune as prune_module
    from gprune_edge import build as build_module
    calls = []
    real_prune = build_module.prune
    build_module.prune = lambda *a, **k: calls.append(1) or real_prune(*a, **k)
    try:
        again = run(*args[1:], "--out", out)
    finally:
        build_module.prune = real_prune
    assert again.exit_code == 0, again.output
    assert calls == [] and (out / "models" / "pruned30" / "model.safetensors").stat().st_mtime_ns == pruned_mtime
    fresh = run(*args[1:], "--out", tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    for name in ("pruned30-f16.gguf", "dense-f16.gguf"):
        assert digest(out / "artifacts" / name) == digest(tmp_path / "fresh" / "artifacts" / name)
    assert prune_module  # the module the build calls through stays importable


def test_a_changed_setting_redoes_only_what_depends_on_it(setup, tmp_path):
    target = write_target(tmp_path / "one.json", {"max_perplexity_ratio": 1e6}, artifacts=("gguf:f16",))
    out = tmp_path / "build"
    args = ["--config", setup / "config.json", "--target", target, "--distill-tokens", 0, "--pairs", 1]
    assert run(*args, "--out", out).exit_code == 0
    before = json.loads((out / "stages.json").read_text())["stages"]
    assert run(*args, "--limit", 1, "--out", out).exit_code == 0  # only the verification changes
    after = json.loads((out / "stages.json").read_text())["stages"]
    unchanged = [n for n in before if n.startswith(("prune", "export"))]
    assert unchanged and all(before[n]["key"] == after[n]["key"] for n in unchanged)
    verify = [n for n in before if n.startswith("verify")]
    assert all(before[n]["key"] != after[n]["key"] for n in verify)
    assert json.loads((out / "build.json").read_text())["config"]["verify"]["limit"] == 1


def test_out_holding_another_run_is_refused_and_kept(setup, tmp_path):
    out = tmp_path / "build"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    result = run("--config", setup / "config.json", "--out", out)
    assert result.exit_code == 1 and "already exists" in result.output
    assert (out / "mine.txt").read_text() == "user data"
    other = tmp_path / "other"
    other.mkdir()
    (other / ".gprune-edge").write_text("")
    (other / "stages.json").write_text(json.dumps({"version": 1, "identity": {"build": "x", "target": "phone"},
                                                   "stages": {}}))
    result = run("--config", setup / "config.json", "--out", other)
    assert result.exit_code == 1 and "holds another run (build x, target phone)" in result.output
    assert json.loads((other / "stages.json").read_text())["identity"]["build"] == "x"


def test_a_config_from_a_newer_version_is_refused(setup, tmp_path):
    data = json.loads((setup / "config.json").read_text())
    data["version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(data))
    result = run("--config", tmp_path / "new.json", "--out", tmp_path / "build")
    assert result.exit_code == 1 and "version 99 is newer" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "build").exists()


def test_targets_lists_the_built_in_profiles_and_checks_a_file(tmp_path):
    result = CliRunner().invoke(cli, ["targets"])
    assert result.exit_code == 0 and "raspberry-pi" in result.output and "budget search" in result.output
    good = write_target(tmp_path / "good.json", {"max_perplexity_ratio": 2})
    assert "valid target profile" in CliRunner().invoke(cli, ["targets", "--check", str(good)]).output
    bad = write_target(tmp_path / "bad.json", {}, search=["gguf:f16", "onnx:fp32"])
    result = CliRunner().invoke(cli, ["targets", "--check", str(bad)])
    assert result.exit_code == 1 and "more than one format" in result.output


@needs_node
def test_a_browser_target_verifies_on_onnxruntime_web(setup, tmp_path):
    target = write_target(tmp_path / "web.json", {"max_perplexity_ratio": 1e6}, artifacts=["onnx:int8-dq"],
                          runtime="onnxruntime-web")
    config = BuildConfig.load(setup / "config.json").replace(target=str(target), distill_tokens=0)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    result = run("--config", tmp_path / "config.json", "--out", tmp_path / "build")
    assert result.exit_code == 0, result.output
    assert "measured on onnxruntime-web" in result.output
    summary = json.loads((tmp_path / "build" / "build.json").read_text())
    report = json.loads((tmp_path / "build" / summary["artifacts"][0]["report"]).with_suffix(".json").read_text())
    assert report["candidates"][0]["backend"] == "onnxruntime-web" and report["baseline_run"]["backend"] == \
        "onnxruntime-web"
    assert "verified on onnxruntime-web" in (tmp_path / "build" / "report.md").read_text()


def test_a_target_runtime_must_serve_its_format(tmp_path):
    bad = write_target(tmp_path / "bad.json", {}, artifacts=["gguf:q8_0"], runtime="onnxruntime-web")
    result = CliRunner().invoke(cli, ["targets", "--check", str(bad)])
    assert result.exit_code == 1 and "does not serve gguf" in result.output
