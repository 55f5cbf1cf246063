"""`gprune-edge build` end to end on a tiny model: prune -> GGUF + ONNX (pruned and
dense) -> verify on llama.cpp and onnxruntime -> gate, and its exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tiny import tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from gprune_edge.build import BuildConfig
from gprune_edge.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args)])


def write_target(path, gate, artifacts=("gguf:f16", "onnx:fp32")):
    path.write_text(json.dumps({"name": "tiny-device", "description": "test target", "artifacts": list(artifacts),
                                "align": 8, "threads": 1, "context_length": 256, "sparsity": 0.3, "gate": gate}))
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
        "target": target, "threads": 1, "calib_cache": str(root / "cache"),
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
    assert "gate passed" in result.output
    summary = json.loads((out / "build.json").read_text())
    assert summary["passed"] and 0.25 <= summary["prune"]["sparsity"] <= 0.35
    assert [a["artifact"] for a in summary["artifacts"]] == ["artifacts/model-f16.gguf", "artifacts/onnx-fp32"]
    for artifact in summary["artifacts"]:
        assert (out / artifact["artifact"]).exists()
        assert (out / ("dense-" + artifact["artifact"])).exists()  # the baseline, same format
        assert artifact["size_bytes"] < artifact["dense_size_bytes"]
        assert artifact["export_parity"]["top1_agreement"] >= 0.95
        report = json.loads((out / artifact["report"]).with_suffix(".json").read_text())
        assert report["candidates"][0]["speed"]["ratio"]["decode_tok_s"]["median"] > 0
    assert (out / "pruned" / "recipe.json").is_file()
    assert json.loads((out / "pruned" / "recipe.json").read_text())["reconstruct"] is True
    assert summary["recovery"]["tokens"] >= 256 and (out / "recovered" / "recovery.json").is_file()
    assert json.loads((out / "pruned" / "recipe.json").read_text())["align"] == 8  # from the target


def test_build_exits_3_when_the_target_budget_is_missed(setup, tmp_path):
    target = write_target(tmp_path / "strict.json", {"min_decode_speedup": 100.0}, artifacts=("gguf:f16",))
    out = tmp_path / "build"
    # --config repeats the saved build; --target overrides it
    result = run("--config", setup / "config.json", "--target", target, "--out", out)
    assert result.exit_code == 3, result.output
    assert "FAILED" in result.output and "decode" in result.output
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
