"""GGUF and ONNX exports of tiny random Llama/Qwen2/Mistral models, reloaded in
llama.cpp and onnxruntime and compared with torch (exporters.verify gates parity)."""

from __future__ import annotations

import json

import gguf
import pytest

from export_helpers import write_tiny
from exporters import export
from runtime_checks.export_parity import TOLERANCES


def _reader_value(path, key):
    return gguf.GGUFReader(str(path)).fields[key].contents()


@pytest.mark.parametrize("family,uniform,arch", [
    ("llama", False, "deci"),
    ("llama", True, "llama"),
    ("qwen2", False, "deci"),  # q/k/v biases, per-layer widths
    ("qwen2", True, "qwen2"),  # stock qwen2: rotate-half layout kept
    ("mistral", False, "deci"),
    ("mistral", True, "llama"),
])
def test_gguf_f32_parity(tmp_path, family, uniform, arch):
    src = write_tiny(tmp_path / "pruned", family, uniform)
    result = export(src, "gguf", "f32", tmp_path / "m.gguf")
    assert result.architecture == arch
    assert result.parity["top1_agreement"] >= 0.99  # a near-tie may flip in f32 noise
    assert result.parity["max_abs_logit_diff"] < 1e-3
    assert result.generation_matches
    assert _reader_value(result.path, "general.architecture") == arch


def test_deci_metadata_is_per_layer(tmp_path):
    result = export(write_tiny(tmp_path / "pruned"), "gguf", "f16", tmp_path / "m.gguf")
    assert _reader_value(result.path, "deci.feed_forward_length") == [96, 64, 32]
    assert _reader_value(result.path, "deci.attention.head_count") == [4, 2, 4]
    assert _reader_value(result.path, "deci.attention.head_count_kv") == [2, 1, 2]
    assert _reader_value(result.path, "deci.attention.key_length") == 16
    assert result.generation_matches


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_onnx_fp32_parity(tmp_path, family):
    src = write_tiny(tmp_path / "pruned", family)
    result = export(src, "onnx", "fp32", tmp_path / "onnx")
    assert result.parity["top1_agreement"] >= 0.99  # a near-tie may flip in f32 noise
    assert result.parity["max_abs_logit_diff"] < 1e-3
    assert result.generation_matches  # decode through the exported KV cache
    assert sorted(p.name for p in result.path.iterdir() if p.name.startswith("model.")) == [
        "model.onnx", "model.onnx_data"]


def test_onnx_names_and_per_layer_kv_shapes(tmp_path):
    import onnx

    result = export(write_tiny(tmp_path / "pruned"), "onnx", "fp32", tmp_path / "onnx", parity="off")
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    outputs = [o.name for o in graph.output]
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert [inputs[f"past_key_values.{i}.key"][1] for i in range(3)] == [2, 1, 2]
    assert inputs["past_key_values.1.value"] == ["batch_size", 1, "past_sequence_length", 16]
    assert outputs == ["logits"] + [f"present.{i}.{k}" for i in range(3) for k in ("key", "value")]


def test_compensation_biases_export_with_parity(tmp_path):
    src = write_tiny(tmp_path / "pruned", compensation=True)
    config = json.loads((src / "config.json").read_text())
    assert config["o_proj_bias"] and config["down_proj_bias"]
    gguf_result = export(src, "gguf", "f32", tmp_path / "m.gguf")
    names = {t.name for t in gguf.GGUFReader(str(gguf_result.path)).tensors}
    assert {"blk.0.ffn_down.bias", "blk.1.attn_output.bias"} <= names
    assert gguf_result.parity["max_abs_logit_diff"] < 1e-3
    onnx_result = export(src, "onnx", "fp32", tmp_path / "onnx")
    assert onnx_result.parity["max_abs_logit_diff"] < 1e-3


@pytest.mark.parametrize("fmt,dtype", [("gguf", "f16"), ("gguf", "q8_0"), ("onnx", "fp16"), ("onnx", "int8"),
                                       ("onnx", "int4")])
def test_lower_precision_within_tolerance(tmp_path, fmt, dtype):
    src = write_tiny(tmp_path / "pruned", "qwen2")
    result = export(src, fmt, dtype, tmp_path / ("m.gguf" if fmt == "gguf" else "onnx"))  # raises beyond tolerance
    assert result.parity["top1_agreement"] >= TOLERANCES[dtype].min_top1


def test_q8_0_stores_q8_0(tmp_path):
    result = export(write_tiny(tmp_path / "pruned"), "gguf", "q8_0", tmp_path / "m.gguf")
    assert result.fallbacks == []  # widths 96/64/32 and hidden 64 are multiples of 32
    assert result.tensor_types["q8_0"] == 3 * 7 + 1  # every projection and the (tied) embedding


def test_k_quant_falls_back_with_warning(tmp_path, caplog):
    src = write_tiny(tmp_path / "pruned")
    with caplog.at_level("WARNING"):
        result = export(src, "gguf", "q4_k_m", tmp_path / "m.gguf", parity="warn")
    assert "not a multiple of 256" in caplog.text and "q5_0" in caplog.text
    assert result.fallbacks and all("stored as" in f for f in result.fallbacks)
    assert "q4_K" not in result.tensor_types  # no row of the tiny model is 256 long


def test_onnx_batch_with_padding_matches_torch(tmp_path):
    """Dynamic batch and a real attention mask: a left-padded row gives the same logits as torch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from exporters.source import load_source

    src = write_tiny(tmp_path / "pruned")
    result = export(src, "onnx", "fp32", tmp_path / "onnx", parity="off")
    source = load_source(src)
    ids = torch.tensor([[5, 9, 17, 33, 65, 7], [0, 0, 12, 40, 8, 99]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = source.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.numpy()
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    for i, shape in enumerate(source.shapes):
        for kind in ("key", "value"):
            feed[f"past_key_values.{i}.{kind}"] = np.zeros((2, shape.kv_heads, 0, shape.head_dim), np.float32)
    session = ort.InferenceSession(str(result.path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], feed)[0]
    real = mask.numpy().astype(bool)
    assert np.abs(logits[real] - expected[real]).max() < 1e-3


def test_int4_keeps_output_v_and_down_projections_in_8_bits(tmp_path):
    import onnx

    result = export(write_tiny(tmp_path / "pruned"), "onnx", "int4", tmp_path / "onnx", parity="off")
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.op_type == "MatMulNBits"}
    eight = {name for name, b in bits.items() if b == 8}
    assert len(bits) == 3 * 7 + 1  # every projection and the output layer
    assert len(eight) == 3 * 2 + 1  # v_proj and down_proj of 3 layers, and the output layer
    assert sum("/v_proj/" in n or "/down_proj/" in n for n in eight) == 6
