"""A model computed one decoder layer at a time (layerwise_logits) equals the whole model, for every
family (Gemma 3's local and global layers get their own masks and rotary embeddings), in memory and
streamed from disk; a GGUF export streams its checkpoint and its parity check never loads the model."""

import pytest
import torch
from export_helpers import needs_llama_cpp
from tiny import tiny_model, tiny_tokenizer

from edgecore import model_layers
from edgecore.model_layers import StreamedLayers, layerwise_logits
from exporters import load_source, write_artifact
from gprune_edge.export import export

IDS = list(range(3, 43))  # 40 tokens: past the tiny Gemma 3's sliding window of 8


@pytest.mark.parametrize("family,layers", [("llama", 3), ("qwen2", 3), ("qwen3", 3), ("gemma3", 7)])
def test_layerwise_equals_whole_model(tmp_path, monkeypatch, family, layers):
    model = tiny_model(family, layers=layers)
    if family == "gemma3":  # layer 5 is global: a rotary base unlike the local layers'
        assert model.config.layer_types[5] == "full_attention"
        model.config.rope_parameters["full_attention"]["rope_theta"] = 1e6
        model = type(model)(model.config).eval()
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.2)
    with torch.no_grad():
        whole = model(torch.tensor([IDS])).logits[0]
    assert torch.allclose(layerwise_logits(model, IDS), whole, atol=1e-5)
    model.save_pretrained(tmp_path / "m")
    # from disk the output layer is read 7 rows at a time (the last block shorter)
    row_bytes = model_layers.COMPUTE_DTYPE.itemsize * model.config.hidden_size
    monkeypatch.setattr(model_layers, "HEAD_BLOCK_BYTES", row_bytes * 7)
    assert model.config.vocab_size % 7
    assert torch.allclose(layerwise_logits(StreamedLayers(tmp_path / "m"), IDS), whole, atol=1e-5)


@needs_llama_cpp
def test_gguf_export_streams_a_sharded_bf16_checkpoint(tmp_path):
    model = tiny_model("llama").to(torch.bfloat16)
    model.save_pretrained(tmp_path / "m", max_shard_size="100KB")
    tiny_tokenizer().save_pretrained(tmp_path / "m")
    assert len(list((tmp_path / "m").glob("*.safetensors"))) > 1
    source = load_source(tmp_path / "m")
    write_artifact(source, "gguf", "f32", tmp_path / "m.gguf")
    assert "model" not in vars(source)  # never loaded whole
    result = export(tmp_path / "m", "gguf", "f32", tmp_path / "checked.gguf")  # parity against torch: layerwise
    assert result.parity["max_abs_logit_diff"] < 1e-3 and result.generation_matches
