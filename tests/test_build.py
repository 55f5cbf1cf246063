"""`gprune-edge build` end to end on a tiny model: the search within a target's budgets (the
dense model quantized included, nothing dominated shipped), a forced --sparsity, gates and exit
codes, target profiles old and new, and a killed build continued by the same command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from export_helpers import needs_node
from tiny import tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from gprune_edge.build import BuildConfig
from gprune_edge.candidates import Candidate, dominates
from gprune_edge.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args)])


def write_target(path, artifacts=("gguf:f16", "gguf:q8_0"), **fields):
    path.write_text(json.dumps({"name": "tiny-device", "description": "test target", "artifacts": list(artifacts),
                                "align": 8, "threads": 1, "context_length": 256, "version": 2, **fields}))
    return path


def candidates_of(out) -> list[Candidate]:
    data = json.loads((out / "build.json").read_text())["candidates"]
    return [Candidate(**{k: v for k, v in c.items() if k != "label"}) for c in data]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    tiny_model("llama").save_pretrained(root / "tiny")
    tiny_tokenizer().save_pretrained(root / "tiny")
    text = root / "calib.txt"
    text.write_text("\n\n".join("".join(chr(33 + (i * 7 + j) % 90) for j in range(300)) for i in range(40)))
    target = str(write_target(root / "target.json", max_perplexity_ratio=1e6))
    config = BuildConfig.from_dict({
        "target": target, "sparsities": [0.3],
        "prune": {"model": str(root / "tiny"), "calib": [str(text)], "n_samples": 4, "seq_len": 32},
        "distill_tokens": 256, "distill": {"data": [str(text)], "seq_len": 32, "batch_size": 4, "eval_windows": 2},
        "verify": {"tasks": ["arc_easy"], "limit": 2, "distributions": ["news"], "max_windows": 2, "seq_len": 64,
                   "speed": {"pairs": 1}},
        # speed off in the search: dominance then rests on exact figures (size, perplexity, memory)
        "search": {"tasks": [], "distributions": ["news"], "max_windows": 2, "seq_len": 64, "limit": None,
                   "speed": None}})
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
    assert old.sparsity == 0.2  # it pruned at its target's sparsity, not a search
    same = new.replace(distill_tokens=0, distill=old.distill, prune=new.prune.replace(reconstruct=False),
                       sparsity=0.2, sparsities=old.sparsities, search=old.search)
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


def test_the_default_build_ships_the_dense_model_when_nothing_needs_pruning(setup, tmp_path):
    """Loose budgets: the dense model at its most accurate type wins, no model is pruned, the
    terminal says so, and what ships is dominated by no candidate that meets the budgets."""
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "build.json").read_text())
    within = [c for c in candidates_of(out) if c.meets]
    shipped = next(c for c in within if c.verdict.startswith("chosen"))
    assert summary["passed"] and shipped.sparsity == 0 and summary["artifacts"][0]["artifact"] == shipped.artifact
    assert not any(dominates(c, shipped) for c in within)
    free = [c for c in within if not any(dominates(o, c) for o in within)]
    assert shipped.perplexity_ratio == min(c.perplexity_ratio for c in free)
    assert f"Nothing needs pruning: the dense model as {shipped.dtype}" in result.output
    assert not (out / "models" / "pruned30").exists()  # nothing was pruned
    pruned = [c for c in summary["candidates"] if c["sparsity"]]
    assert pruned and all(c["verdict"].startswith("skipped: cannot beat") for c in pruned)
    assert "skipped 2 of 4 candidates" in result.output
    assert summary["runtime"] == "llama.cpp, 1 thread, a KV cache of 256 tokens, flash attention"
    report = json.loads((out / summary["artifacts"][0]["report"]).with_suffix(".json").read_text())
    assert report["settings"]["context_length"] == 256 and report["settings"]["flash_attention"] is True
    assert summary["artifacts"][0]["budgets"] == ["worst perplexity ratio: 1.000 meets 1e+06"] or shipped.dtype != \
        "f16"  # the reference against itself; another type has its own ratio
    assert any(line.startswith("worst perplexity ratio: ") for line in summary["artifacts"][0]["budgets"])


def test_a_budget_the_dense_model_cannot_meet_ships_a_pruned_artifact(setup, tmp_path):
    out = tmp_path / "build"
    # find the sizes: the dense q8_0 and what 30% pruning predicts for it
    first = run("--config", setup / "config.json", "--sparsity", 0, "--distill-tokens", 0, "--out", out)
    assert first.exit_code == 0, first.output
    dense_q8 = next(c for c in candidates_of(out) if c.label == "dense-q8_0.gguf").size_bytes / 1e6
    result = run("--config", setup / "config.json", "--max-size", dense_q8 * 0.97, "--distill-tokens", 0,
                 "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "build.json").read_text())
    shipped = summary["artifacts"][0]
    assert shipped["sparsity"] == 0.3 and shipped["size_bytes"] / 1e6 <= dense_q8 * 0.97
    assert "no dense quantization meets them" in summary["note"]
    assert any(line.startswith("storage: ") and "meets" in line for line in shipped["budgets"])
    assert all(c["verdict"].startswith(("misses", "skipped")) for c in summary["candidates"] if not c["sparsity"])


def test_a_forced_sparsity_ships_and_names_what_the_search_would_have_shipped(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--sparsity", 0.3, "--distill-tokens", 0, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "build.json").read_text())
    assert summary["artifacts"][0]["sparsity"] == 0.3
    candidates = candidates_of(out)
    shipped = next(c for c in candidates if c.verdict.startswith("chosen"))
    over = [c.label for c in candidates if dominates(c, shipped)]
    if over:  # which types dominate depends on the random weights' quantization error; test_candidates.py fixes a case
        assert f"{shipped.label} is dominated by {', '.join(over)}" in summary["note"]
    else:
        assert "dominated" not in summary["note"]
    within = [c for c in candidates if c.meets]
    search = min((c for c in within if not any(dominates(o, c) for o in within)), key=lambda c: c.perplexity_ratio)
    assert search.sparsity == 0 and f"the search would have shipped {search.label}" in summary["note"]
    assert summary["note"][:20].lower() in result.output.lower()


def test_build_exits_3_when_what_ships_misses_a_budget_on_the_full_tier(setup, tmp_path):
    """The search measures on the quick tier, the gate on the full one: a quality floor between
    the two tiers' figures (each tier on its own distribution) passes the one and fails the other."""
    out = tmp_path / "build"
    data = json.loads((setup / "config.json").read_text())
    data["verify"]["distributions"] = ["news", "wiki"]
    (tmp_path / "both.json").write_text(json.dumps(data))
    first = run("--config", tmp_path / "both.json", "--sparsity", 0.3, "--distill-tokens", 0, "--out", out)
    assert first.exit_code == 0, first.output
    report = json.loads((out / json.loads((out / "build.json").read_text())["artifacts"][0]["report"])
                        .with_suffix(".json").read_text())
    ratios = {d: p["ratio"] for d, p in report["candidates"][0]["comparison"]["perplexity"].items()}
    better, worse = sorted(ratios, key=ratios.get)
    data["search"]["distributions"], data["verify"]["distributions"] = [better], [worse]
    (tmp_path / "split.json").write_text(json.dumps(data))
    floor = (ratios[better] + ratios[worse]) / 2
    result = run("--config", tmp_path / "split.json", "--sparsity", 0.3, "--distill-tokens", 0,
                 "--max-perplexity-ratio", floor, "--out", out)
    assert result.exit_code == 3, result.output
    assert "gate fail" in result.output and f"worst perplexity ratio: {ratios[worse]:.3f} misses" in result.output
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
    target = write_target(tmp_path / "bad.json", artifacts=("gguf:q3_weird",))
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--target", target, "--out", out)
    assert result.exit_code == 1 and "unknown dtype 'q3_weird' for gguf" in result.output
    assert not out.exists()


# ---- target profiles -------------------------------------------------------------------------------------

def first_layout(path, **fields):
    profile = {"name": "old", "description": "a profile of the first layout", "artifacts": ["gguf:q8_0", "onnx:int4"],
               "align": 32, "threads": 4, "context_length": 1024, "sparsity": 0.2,
               "gate": {"max_perplexity_ratio": 3.0, "max_peak_memory_mb": 768}, "search": ["gguf:q8_0", "gguf:q4_k_m"],
               "search_sparsities": [0.0, 0.2]}
    path.write_text(json.dumps({**profile, **fields}))
    return path


def test_a_target_of_the_first_layout_converts_with_a_one_line_note(tmp_path, capsys):
    from gprune_edge.targets import load_target

    profile = load_target(str(first_layout(tmp_path / "old.json")))
    assert profile.artifacts == ["gguf:q8_0", "gguf:q4_k_m"] and profile.memory_mb == 768
    assert profile.max_perplexity_ratio == 3.0 and profile.version == 2
    notes = [line for line in capsys.readouterr().err.splitlines() if "first layout" in line]
    assert len(notes) == 1 and "sparsity 0.2 dropped" in notes[0] and "onnx:int4 dropped" in notes[0]


def test_a_target_of_the_first_layout_with_a_gate_key_no_budget_holds_fails_in_one_line(tmp_path):
    bad = first_layout(tmp_path / "old.json", gate={"min_top1_agreement": 0.9})
    result = CliRunner().invoke(cli, ["targets", "--check", str(bad)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "gate key min_top1_agreement has no device budget" in result.output


def test_the_built_in_targets_say_where_their_figures_come_from():
    from gprune_edge.targets import BUDGET_FIELDS, load_target, target_names

    for name in target_names():
        profile = load_target(name)
        assert profile.version == 2 and profile.memory_mb and profile.storage_mb and profile.max_perplexity_ratio
        given = [f for f in BUDGET_FIELDS if getattr(profile, f) is not None]
        assert set(given) <= set(profile.sources), name


# ---- budgets ---------------------------------------------------------------------------------------------

def test_a_budget_nothing_can_meet_is_refused_before_pruning(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--max-size", 0.0001, "--out", out)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # above it: progress bars of the dense exports
    assert last.startswith("Error: no artifact can meet size <= 0.0001 MB") and "the smallest is about" in last
    assert not (out / "models").exists()  # nothing was pruned


def test_a_budget_no_measured_candidate_meets_is_refused_with_the_closest_figure(setup, tmp_path):
    out = tmp_path / "build"
    result = run("--config", setup / "config.json", "--sparsity", 0, "--max-perplexity-ratio", 0.5, "--out", out)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: no candidate at sparsity 0 meets perplexity ratio <= 0.5; closest: perplexity ratio")
    assert (out / "checks").is_dir() and not (out / "build.json").exists()  # kept for a rerun with a looser budget


def test_a_sparsity_that_contradicts_a_budget_is_refused(setup, tmp_path):
    result = run("--config", setup / "config.json", "--sparsity", 0.1, "--min-decode-speedup", 50,
                 "--out", tmp_path / "build")
    assert result.exit_code == 1 and "at sparsity 0.1 (drop --sparsity" in result.output


# ---- resuming --------------------------------------------------------------------------------------------

def test_a_killed_build_continues_where_it_stopped(setup, tmp_path):
    """SIGKILL during the second export; the same command then redoes neither calibration nor pruning,
    and its artifacts are the uninterrupted build's byte for byte."""
    import hashlib
    import os
    import subprocess
    import sys

    target = write_target(tmp_path / "one.json", artifacts=("gguf:f16",), max_perplexity_ratio=1e6)
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
    args = ["build", "--config", str(setup / "config.json"), "--target", str(target), "--sparsity", "0.3",
            "--distill-tokens", "0", "--pairs", "1"]
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
    target = write_target(tmp_path / "one.json", artifacts=("gguf:f16",), max_perplexity_ratio=1e6)
    out = tmp_path / "build"
    args = ["--config", setup / "config.json", "--target", target, "--sparsity", 0.3, "--distill-tokens", 0,
            "--pairs", 1]
    assert run(*args, "--out", out).exit_code == 0
    before = json.loads((out / "stages.json").read_text())["stages"]
    assert run(*args, "--limit", 1, "--out", out).exit_code == 0  # only the verification changes
    after = json.loads((out / "stages.json").read_text())["stages"]
    unchanged = [n for n in before if n.startswith(("prune", "export")) or n.endswith("(checks)")]
    assert unchanged and all(before[n]["key"] == after[n]["key"] for n in unchanged)
    verify = [n for n in before if n.endswith("(reports)")]  # the full tier, which the limit belongs to
    assert verify and all(before[n]["key"] != after[n]["key"] for n in verify)
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
    assert result.exit_code == 0 and "raspberry-pi" in result.output and "memory_mb 1024" in result.output
    good = write_target(tmp_path / "good.json", max_perplexity_ratio=2)
    assert "valid target profile" in CliRunner().invoke(cli, ["targets", "--check", str(good)]).output
    bad = write_target(tmp_path / "bad.json", artifacts=["gguf:f16", "onnx:fp32"])
    result = CliRunner().invoke(cli, ["targets", "--check", str(bad)])
    assert result.exit_code == 1 and "more than one format" in result.output


@needs_node
def test_a_browser_target_verifies_on_onnxruntime_web(setup, tmp_path):
    target = write_target(tmp_path / "web.json", artifacts=["onnx:int8-dq"], max_perplexity_ratio=1e6,
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
    assert "measured on onnxruntime-web" in (tmp_path / "build" / "report.md").read_text()


def test_a_target_runtime_must_serve_its_format(tmp_path):
    bad = write_target(tmp_path / "bad.json", artifacts=["gguf:q8_0"], runtime="onnxruntime-web")
    result = CliRunner().invoke(cli, ["targets", "--check", str(bad)])
    assert result.exit_code == 1 and "does not serve gguf" in result.output
