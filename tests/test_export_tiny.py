"""The exporters layer on tiny random Llama/Qwen2/Mistral models: `write_artifact` writes a
GGUF or an ONNX decoder that loads in llama.cpp / onnxruntime and whose logits and greedy
generation match torch. Exporters only write; the pipeline's gating is tested in test_export_cli."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from export_helpers import artifact_path, check_against_torch, needs_llama_cpp, tolerance_problems, write, write_tiny

from edgecore.errors import GPruneError
from exporters import FORMATS, RUNTIMES, WrittenArtifact, check_request, load_source
from runtime_checks.export_parity import TOLERANCES


def _reader_value(path, key):
    return gguf.GGUFReader(str(path)).fields[key].contents()


def _source(tmp_path, *args, **kwargs):
    return load_source(write_tiny(tmp_path / "pruned", *args, **kwargs))


@needs_llama_cpp
@pytest.mark.parametrize("family,uniform,arch", [
    ("llama", False, "deci"),
    ("llama", True, "llama"),
    ("qwen2", False, "deci"),  # q/k/v biases, per-layer widths
    ("qwen2", True, "qwen2"),  # stock qwen2: rotate-half layout kept
    ("mistral", False, "deci"),
    ("mistral", True, "llama"),
])
def test_gguf_f32_parity(tmp_path, family, uniform, arch):
    source = _source(tmp_path, family, uniform)
    result = write(source, "gguf", "f32", tmp_path / "m.gguf")
    assert result.architecture == arch and result.runtime == "llama.cpp"
    assert result.path == tmp_path / "m.gguf" and result.size_bytes == result.path.stat().st_size
    checked = check_against_torch(result, source)
    assert checked.parity["top1_agreement"] >= 0.99  # a near-tie may flip in f32 noise
    assert checked.parity["max_abs_logit_diff"] < 1e-3
    assert checked.generation_matches
    assert _reader_value(result.path, "general.architecture") == arch


@needs_llama_cpp
def test_deci_metadata_is_per_layer(tmp_path):
    source = _source(tmp_path)
    result = write(source, "gguf", "f16", tmp_path / "m.gguf")
    assert _reader_value(result.path, "deci.feed_forward_length") == [96, 64, 32]
    assert _reader_value(result.path, "deci.attention.head_count") == [4, 2, 4]
    assert _reader_value(result.path, "deci.attention.head_count_kv") == [2, 1, 2]
    assert _reader_value(result.path, "deci.attention.key_length") == 16
    assert check_against_torch(result, source).generation_matches


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_onnx_fp32_parity(tmp_path, family):
    source = _source(tmp_path, family)
    result = write(source, "onnx", "fp32", tmp_path / "onnx")
    assert result.architecture == "decoder-with-past" and result.runtime == "onnxruntime"
    checked = check_against_torch(result, source)
    assert checked.parity["top1_agreement"] >= 0.99  # a near-tie may flip in f32 noise
    assert checked.parity["max_abs_logit_diff"] < 1e-3
    assert checked.generation_matches  # decode through the exported KV cache
    assert sorted(p.name for p in result.path.iterdir() if p.name.startswith("model.")) == [
        "model.onnx", "model.onnx_data"]
    assert {"config.json", "tokenizer.json"} <= {p.name for p in result.path.iterdir()}  # self-contained


def test_onnx_folder_is_self_contained(tmp_path):
    """Per-layer widths: the folder alone gives the config (through the code it names) and a tokenizer that
    transformers 4.x reads too (not 5.x's TokenizersBackend); head_dim is written out."""
    from transformers import AutoConfig, AutoTokenizer

    source = _source(tmp_path)
    folder = write(source, "onnx", "fp32", tmp_path / "onnx").path
    moved = tmp_path / "elsewhere"
    folder.rename(moved)  # nothing may point back at the checkpoint it came from
    config = json.loads((moved / "config.json").read_text())
    assert config["model_type"] == "gprune_llama" and config["head_dim"] == source.config.head_dim
    assert {"configuration_gprune.py", "modeling_gprune.py"} <= {p.name for p in moved.iterdir()}
    assert AutoConfig.from_pretrained(moved, trust_remote_code=True).intermediate_sizes == [96, 64, 32]
    tokenizer_config = json.loads((moved / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    text = "The capital of France is 42."
    assert AutoTokenizer.from_pretrained(moved)(text)["input_ids"] == source.tokenizer(text)["input_ids"]


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8", "int4", "int8-dq", "int4-dq"])
def test_tied_embedding_is_stored_once(tmp_path, dtype):
    import onnx

    from edgecore.onnx_names import session_options

    source = _source(tmp_path)
    assert source.config.tie_word_embeddings
    written = write(source, "onnx", dtype, tmp_path / "onnx")
    model = onnx.load(str(written.path / "model.onnx"), load_external_data=False)
    graph = model.graph
    vocab, hidden = source.config.vocab_size, source.config.hidden_size
    tables = [t for t in graph.initializer
              if vocab in (t.dims[0], t.dims[-1]) and math.prod(t.dims) >= vocab * hidden / 2]
    assert len(tables) == 1  # (scales and zero points of a quantized table are far smaller)
    if dtype.endswith("-dq"):  # the runtimes must fold the blocks at load: the graph says so
        assert session_options(model) == {"session.disable_quant_qdq": "1"}
        assert {n.op_type for n in graph.node} >= {"DequantizeLinear", "MatMul"}
        assert "MatMulNBits" not in {n.op_type for n in graph.node}


def test_untied_embedding_keeps_both_tables(tmp_path):
    import onnx

    from edgecore.checkpoint import save_checkpoint
    from tiny import tiny_model, tiny_tokenizer

    save_checkpoint(tiny_model("llama", tie=False), tiny_tokenizer(), tmp_path / "untied")
    source = load_source(tmp_path / "untied")
    written = write(source, "onnx", "int8", tmp_path / "onnx")
    graph = onnx.load(str(written.path / "model.onnx"), load_external_data=False).graph
    assert "GatherBlockQuantized" not in {n.op_type for n in graph.node}
    assert check_against_torch(written, source).parity["top1_agreement"] >= 0.9


def test_onnx_names_and_per_layer_kv_shapes(tmp_path):
    import onnx

    result = write(_source(tmp_path), "onnx", "fp32", tmp_path / "onnx")
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    outputs = [o.name for o in graph.output]
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert [inputs[f"past_key_values.{i}.key"][1] for i in range(3)] == [2, 1, 2]
    assert inputs["past_key_values.1.value"] == ["batch_size", 1, "past_sequence_length", 16]
    assert outputs == ["logits"] + [f"present.{i}.{k}" for i in range(3) for k in ("key", "value")]


@needs_llama_cpp
def test_compensation_biases_export_with_parity(tmp_path):
    src = write_tiny(tmp_path / "pruned", compensation=True)
    config = json.loads((src / "config.json").read_text())
    assert config["o_proj_bias"] and config["down_proj_bias"]
    source = load_source(src)
    gguf_result = write(source, "gguf", "f32", tmp_path / "m.gguf")
    assert gguf_result.architecture == "deci"
    names = {t.name for t in gguf.GGUFReader(str(gguf_result.path)).tensors}
    assert {"blk.0.ffn_down.bias", "blk.1.attn_output.bias"} <= names
    assert check_against_torch(gguf_result, source).parity["max_abs_logit_diff"] < 1e-3
    onnx_result = write(source, "onnx", "fp32", tmp_path / "onnx")
    assert check_against_torch(onnx_result, source).parity["max_abs_logit_diff"] < 1e-3


@pytest.mark.parametrize("fmt,dtype", [("gguf", "f16"), ("gguf", "q8_0"), ("onnx", "fp16"), ("onnx", "int8"),
                                       ("onnx", "int4"), ("onnx", "int8-dq"), ("onnx", "int4-dq"),
                                       ("onnx", "dynamic-int8")])
def test_lower_precision_within_tolerance(tmp_path, fmt, dtype):
    if fmt == "gguf":
        pytest.importorskip("llama_cpp")
    source = _source(tmp_path, "qwen2")
    result = write(source, fmt, dtype, artifact_path(tmp_path, fmt))
    parity = check_against_torch(result, source).parity
    assert tolerance_problems(parity, dtype) == []  # what the pipeline's parity gate checks
    assert parity["top1_agreement"] >= TOLERANCES[dtype].min_top1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pruned", result.path.name])  # no scratch left
    if fmt == "onnx":  # one graph, one data file, whatever the converter wrote on the way
        assert sorted(p.name for p in result.path.iterdir() if p.name.startswith("model.")) == [
            "model.onnx", "model.onnx_data"]


@needs_llama_cpp
def test_q8_0_stores_q8_0(tmp_path):
    result = write(_source(tmp_path), "gguf", "q8_0", tmp_path / "m.gguf")
    assert result.fallbacks == []  # widths 96/64/32 and hidden 64 are multiples of 32
    assert result.tensor_types["q8_0"] == 3 * 7 + 1  # every projection and the (tied) embedding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "pruned"]  # the intermediate removed


@needs_llama_cpp
def test_a_bf16_checkpoint_quantizes_through_a_bf16_intermediate_to_the_f32_routes_bytes(tmp_path):
    """The intermediate holds the checkpoint exactly in half the disk: the quantized file is the same, byte for
    byte, as through float32; a bf16 export stores the checkpoint's own bits."""
    import torch
    from tiny import tiny_model, tiny_tokenizer

    from exporters.gguf_artifact import lossless_type
    from exporters.gguf_quantize import quantize_gguf
    from exporters.gguf_writer import write_gguf

    model = tiny_model("llama").to(torch.bfloat16)
    model.save_pretrained(tmp_path / "m")
    tiny_tokenizer().save_pretrained(tmp_path / "m")
    source = load_source(tmp_path / "m")
    assert lossless_type(source) == "bf16" and lossless_type(_source(tmp_path)) == "f32"
    write(source, "gguf", "q8_0", tmp_path / "via_bf16.gguf")
    write_gguf(source, tmp_path / "f32.gguf", "f32")
    quantize_gguf(tmp_path / "f32.gguf", tmp_path / "via_f32.gguf", "q8_0")
    tensors = [{t.name: bytes(t.data) for t in gguf.GGUFReader(str(tmp_path / f)).tensors}
               for f in ("via_bf16.gguf", "via_f32.gguf")]
    assert tensors[0] == tensors[1]
    write(source, "gguf", "bf16", tmp_path / "bf16.gguf")
    stored = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "bf16.gguf")).tensors}["token_embd.weight"]
    assert bytes(stored.data) == model.model.embed_tokens.weight.detach().view(torch.int16).numpy().tobytes()


@needs_llama_cpp
def test_k_quant_falls_back_with_warning(tmp_path, caplog):
    source = _source(tmp_path)
    with caplog.at_level("WARNING"):
        result = write(source, "gguf", "q4_k_m", tmp_path / "m.gguf")
    assert "not a multiple of 256" in caplog.text and "q5_0" in caplog.text
    assert result.fallbacks and all("stored as" in f for f in result.fallbacks)
    assert "q4_K" not in result.tensor_types  # no row of the tiny model is 256 long
    with load_backend_for(result) as backend:  # a fallback mix still loads and runs
        assert len(backend.generate([1, 5, 9], 4).tokens) == 4


def load_backend_for(result):
    from runtime_checks.backends import load_backend

    return load_backend(result.runtime, result.path, threads=2)


def test_strict_k_quant_width_fails_before_writing(tmp_path):
    source = _source(tmp_path)
    with pytest.raises(GPruneError, match=r"cannot be stored as q4_k_m \(strict\).*--align 256"):
        write(source, "gguf", "q4_k_m", tmp_path / "m.gguf", strict=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]  # nothing written, no scratch left


def test_onnx_batch_with_padding_matches_torch(tmp_path):
    """Dynamic batch and a real attention mask: a left-padded row gives the same logits as torch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    source = _source(tmp_path)
    result = write(source, "onnx", "fp32", tmp_path / "onnx")
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

    result = write(_source(tmp_path), "onnx", "int4", tmp_path / "onnx")
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.op_type == "MatMulNBits"}
    eight = {name for name, b in bits.items() if b == 8}
    assert len(bits) == 3 * 7 + 1  # every projection and the output layer
    assert len(eight) == 3 * 2 + 1  # v_proj and down_proj of 3 layers, and the output layer
    assert sum("/v_proj/" in n or "/down_proj/" in n for n in eight) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx", "pruned"]  # fp32 scratch removed


def test_eight_bit_matmuls_follow_the_family_layout():
    """The 8-bit MatMuls are found through the family adapter's module paths, not fixed names."""
    import dataclasses

    import onnx
    from onnx import helper

    from edgecore.families import FAMILIES
    from exporters.onnx_quantize import eight_bit_matmuls

    names = ["/model/model/layers.0/attn/wq/MatMul", "/model/model/layers.0/attn/wv/MatMul",
             "/model/model/layers.0/ffn/w2/MatMul", "/model/model/layers.0/ffn/w1/MatMul", "/model/lm_head/MatMul"]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], [f"y{i}"], name=n) for i, n in enumerate(names)],
                              "g", [], [])
    model = helper.make_model(graph)
    renamed = dataclasses.replace(FAMILIES["llama"], layout={**FAMILIES["llama"].layout, "q_proj": "attn.wq",
                                                               "v_proj": "attn.wv", "down_proj": "ffn.w2"})
    assert isinstance(model, onnx.ModelProto)
    assert sorted(eight_bit_matmuls(model, renamed)) == sorted([names[1], names[2], names[4]])
    assert eight_bit_matmuls(model, FAMILIES["llama"]) == [names[4]]  # only the output layer matches stock paths


def test_written_artifact_and_request_checks(tmp_path):
    result = write(_source(tmp_path), "onnx", "fp32", tmp_path / "onnx")
    assert isinstance(result, WrittenArtifact)
    d = result.to_dict()
    assert d["path"] == str(tmp_path / "onnx") and d["format"] == "onnx" and d["dtype"] == "fp32"
    assert d["runtime"] == RUNTIMES["onnx"] and d["export_s"] > 0 and d["size_bytes"] > 0
    assert d["fallbacks"] == [] and d["tensor_types"] == {}
    assert set(RUNTIMES) == set(FORMATS)
    with pytest.raises(GPruneError, match="unknown format 'tflite'"):
        check_request("tflite", "f16")
    with pytest.raises(GPruneError, match="unknown dtype 'int4' for gguf"):
        check_request("gguf", "int4")


def test_exporters_import_no_other_layer():
    """exporters stands on edgecore only: importing every module of it loads no runtime_checks/gprune."""
    code = ("import pkgutil, importlib, sys, exporters\n"
            "for m in pkgutil.iter_modules(exporters.__path__): importlib.import_module('exporters.' + m.name)\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'runtime_checks', 'gprune', 'gprune_edge'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == "[]"


@needs_llama_cpp
def test_head_counts_that_do_not_divide_the_hidden_size(tmp_path):
    """Llama-3.2-1B keeps e.g. 24 of 32 heads of 64 on hidden 2048: transformers' stock config refuses
    that head count, so the model stays in the per-layer format, reloads, and exports to GGUF `deci`
    and ONNX with the logits of torch. Tiny: 8 heads of 8 on hidden 64, 3 of 4 KV groups kept -> 6 heads."""
    import torch
    from tiny import random_ids, tiny_model, tiny_tokenizer
    from transformers import AutoModelForCausalLM

    from edgecore.checkpoint import save_checkpoint
    from edgecore.families import fits_stock_layout
    from gprune.surgery import LayerKeep, resize

    model = tiny_model("llama", num_attention_heads=8, num_key_value_heads=4, head_dim=8)
    pruned = resize(model, [LayerKeep(torch.arange(96), torch.tensor([0, 1, 3])) for _ in range(3)])
    assert pruned.config.num_attention_heads_per_layer == [6, 6, 6] and not fits_stock_layout(pruned.config)
    save_checkpoint(pruned, tiny_tokenizer(), tmp_path / "p")
    ids = random_ids()
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(tmp_path / "p")(ids).logits,
                                   pruned(ids).logits)
    source = load_source(tmp_path / "p")
    for fmt, dtype in (("gguf", "f32"), ("onnx", "fp32")):
        checked = check_against_torch(write(source, fmt, dtype, artifact_path(tmp_path / fmt, fmt)), source)
        assert checked.parity["max_abs_logit_diff"] < 1e-3 and checked.generation_matches, fmt


@needs_llama_cpp
def test_qwen3_gguf_stock_and_per_layer(tmp_path):
    """Qwen3 (q/k norms): uniform widths export as llama.cpp's qwen3 with torch's logits; per-layer
    widths have no llama.cpp architecture (deci has no q/k norms; a per-layer qwen3 GGUF does not
    load, tried with this writer) and are refused in one line that says what to do."""
    source = _source(tmp_path, "qwen3", uniform=True)
    result = write(source, "gguf", "f32", tmp_path / "m.gguf")
    assert result.architecture == "qwen3"
    checked = check_against_torch(result, source)
    assert checked.parity["max_abs_logit_diff"] < 1e-3 and checked.generation_matches
    with pytest.raises(GPruneError, match="llama.cpp has no architecture for a qwen3 model .* uniform=true"):
        write(_source(tmp_path / "per-layer", "qwen3"), "gguf", "f32", tmp_path / "p.gguf")
    onnx = write(_source(tmp_path / "onnx", "qwen3"), "onnx", "fp32", tmp_path / "onnx-out")
    assert check_against_torch(onnx, load_source(tmp_path / "onnx" / "pruned")).parity["max_abs_logit_diff"] < 1e-3
