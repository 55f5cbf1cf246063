"""`gprune-edge export` on bad input: one-line error, exit status 1, nothing left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from export_helpers import write_tiny
from safetensors.torch import load_file, save_file

from edgecore.errors import GPruneError
from gprune_edge.cli import cli
from runtime_checks.export_parity import check_tolerance
from runtime_checks.parity import compare_logits


def run(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("src") / "pruned")


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_export_is_listed():
    assert "export" in CliRunner().invoke(cli, ["--help"]).output


def test_unknown_format(tiny_dir, tmp_path):
    result = run(tiny_dir, "--format", "tflite", "--dtype", "f16", "--out", tmp_path / "x")
    assert result.exit_code == 1 and "unknown format 'tflite'" in result.output
    assert _leftovers(tmp_path) == []


def test_unknown_dtype(tiny_dir, tmp_path):
    result = run(tiny_dir, "--format", "gguf", "--dtype", "int4", "--out", tmp_path / "x.gguf")
    assert result.exit_code == 1 and "unknown dtype 'int4' for gguf" in result.output
    assert _leftovers(tmp_path) == []


def test_not_a_model_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(tmp_path / "empty", "--format", "onnx", "--dtype", "fp32", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "not a model directory" in result.output
    assert _leftovers(tmp_path) == ["empty"]


def test_head_dims_differ(tmp_path):
    src = write_tiny(tmp_path / "pruned")
    weights = load_file(src / "model.safetensors")
    # layer 1 (2 query heads, 1 KV head) rewritten with 32-wide heads; the other layers have 16
    weights["model.layers.1.self_attn.q_proj.weight"] = torch.randn(64, 64)
    weights["model.layers.1.self_attn.k_proj.weight"] = torch.randn(32, 64)
    weights["model.layers.1.self_attn.v_proj.weight"] = torch.randn(32, 64)
    weights["model.layers.1.self_attn.o_proj.weight"] = torch.randn(64, 64)
    save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
    result = run(src, "--format", "gguf", "--dtype", "f16", "--out", tmp_path / "m.gguf")
    assert result.exit_code == 1 and "head dims differ across layers ([16, 32])" in result.output
    assert not (tmp_path / "m.gguf").exists()


def test_strict_k_quant_width_is_an_error(tiny_dir, tmp_path):
    result = run(tiny_dir, "--format", "gguf", "--dtype", "q4_k_m", "--strict", "--out", tmp_path / "m.gguf")
    assert result.exit_code == 1
    assert "cannot be stored as q4_k_m (strict)" in result.output and "--align 256" in result.output
    assert _leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tiny_dir, tmp_path):
    (tmp_path / "m.gguf").write_text("keep me")
    result = run(tiny_dir, "--format", "gguf", "--dtype", "f16", "--out", tmp_path / "m.gguf")
    assert result.exit_code == 1 and "already exists" in result.output
    assert (tmp_path / "m.gguf").read_text() == "keep me"


def test_cli_success_prints_parity(tiny_dir, tmp_path):
    result = run(tiny_dir, "--format", "gguf", "--dtype", "f16", "--out", tmp_path / "m.gguf", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["architecture"] == "deci" and report["parity"]["top1_agreement"] >= 0.99
    assert _leftovers(tmp_path) == ["m.gguf"]


def test_parity_gate_rejects_a_broken_artifact():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(32, 50)).astype(np.float32) * 4
    ids = list(rng.integers(0, 50, 32))
    noisy = compare_logits(reference, reference + rng.normal(size=reference.shape).astype(np.float32) * 3, ids)
    with pytest.raises(GPruneError, match="fails parity"):
        check_tolerance(noisy, "q8_0", "gguf export")
    check_tolerance(compare_logits(reference, reference + 1e-4, ids), "f32", "gguf export")
