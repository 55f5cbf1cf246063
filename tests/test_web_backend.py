"""The onnxruntime-web backend (WASM in Node) on tiny random models: the same logits and greedy
tokens as native onnxruntime and torch, per-layer KV shapes, quantized graphs whose contrib ops
the WASM build must have, the Node process's own memory, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import (
    PARITY_TEXT,
    check_against_torch,
    needs_node,
    write,
    write_tiny,
)

from edgecore.errors import GPruneError
from exporters import load_source
from runtime_checks.backends import backend_class, load_backend

pytestmark = needs_node


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return load_source(write_tiny(tmp_path_factory.mktemp("web") / "pruned"))  # per-layer widths


@pytest.fixture(scope="module")
def fp32(source, tmp_path_factory):
    return write(source, "onnx", "fp32", tmp_path_factory.mktemp("web") / "onnx")


def _on_web(written):
    written.runtime = "onnxruntime-web"
    return written


def test_web_matches_native_and_torch(fp32, source):
    checked = check_against_torch(_on_web(fp32), source)
    assert checked.parity["max_abs_logit_diff"] < 1e-3 and checked.generation_matches
    ids = source.tokenizer(PARITY_TEXT)["input_ids"]
    with load_backend("onnxruntime-web", fp32.path) as web, load_backend("onnxruntime", fp32.path, 1) as native:
        assert web.vocab_size == native.vocab_size
        np.testing.assert_allclose(web.logits(ids), native.logits(ids), atol=1e-4)
        timing = web.generate(ids[:20], 6)
        assert timing.tokens == native.generate(ids[:20], 6).tokens
        assert timing.prefill_s > 0 and timing.decode_s > 0
        memory = web.process_memory()
        assert memory["peak_rss_mb"] > memory["before_load_mb"] > 0


@pytest.mark.parametrize("dtype", ["int4", "int8", "int4-dq", "int8-dq", "dynamic-int8", "fp16"])
def test_quantized_graphs_run_in_wasm(source, tmp_path, dtype):
    written = write(source, "onnx", dtype, tmp_path / dtype)
    ids = source.tokenizer(PARITY_TEXT)["input_ids"]
    with load_backend("onnxruntime-web", written.path) as web, load_backend("onnxruntime", written.path, 1) as native:
        on_web, on_native = web.logits(ids), native.logits(ids)
    # one graph on two builds of one runtime: the kernels differ (WASM SIMD vs AVX; native int4 quantizes
    # activations to 8 bits, accuracy_level 4), the answer must not beyond that rounding
    assert np.abs(on_web - on_native).max() < 0.1 * np.abs(on_native).max()
    assert (on_web.argmax(-1) == on_native.argmax(-1)).mean() >= 0.9


def test_memory_probe_reports_the_node_process(fp32):
    from runtime_checks.memory import peak_rss

    peak = peak_rss(fp32.path, "onnxruntime-web", threads=1)
    assert peak.model_mb > 0 and peak.peak_rss_mb > peak.model_mb


def test_no_node_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GPruneError, match="needs Node.js 18 or newer on PATH"):
        backend_class("onnxruntime-web")


def test_not_a_decoder_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    with pytest.raises(GPruneError, match="not a decoder with a KV cache"):
        load_backend("onnxruntime-web", tmp_path)


def test_a_graph_wasm_rejects_is_one_line(fp32, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(fp32.path, broken)
    (broken / "model.onnx_data").write_bytes(b"\0" * 16)  # weights cut short
    with pytest.raises(GPruneError, match="onnxruntime-web cannot load this model"):
        load_backend("onnxruntime-web", broken)
