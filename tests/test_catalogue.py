"""The catalogue of real shapes: random-weight models of each, cut to one layer with the real
widths (and a small vocabulary, to stay fast), prune, save, reload with the logits of torch; an
architecture the adapters do not cover is refused in one line naming those they do."""

import pytest
import torch
from tiny import random_ids, tiny_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

from edgecore.catalogue import CATALOGUE, random_model, shape_config
from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError
from edgecore.families import FAMILIES, layer_shapes
from edgecore.params import prunable_params
from gprune.calibration import CalibConfig, collect
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe

VOCAB = 512  # tiny_tokenizer's ids fit in it
SUPPORTED = [n for n, s in CATALOGUE.items() if s.model_type in FAMILIES]


def test_the_catalogue_holds_the_shapes_people_ship():
    assert {"smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "mistral-7b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b",
            "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "gemma-3-270m", "gemma-3-1b"} == set(CATALOGUE)
    config = shape_config("llama-3.2-1b")  # the shape that crashed pruning: 24 of 32 heads do not divide 2048
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (
        2048, 32, 8, 64)
    assert shape_config("qwen3-0.6b").head_dim * shape_config("qwen3-0.6b").num_attention_heads != 1024


@pytest.mark.parametrize("name", SUPPORTED)
def test_a_real_shape_prunes_saves_and_reloads(tmp_path, name):
    model = random_model(name, layers=1, vocab=VOCAB)
    recipe = PruneRecipe(model=name, sparsity=0.5, align=32, method=method_config("magnitude"))
    pruned, _ = prune_model(model, tiny_tokenizer(), recipe)
    assert 0.45 <= 1 - prunable_params(pruned.config) / prunable_params(model.config) <= 0.55
    assert layer_shapes(pruned.config)[0].head_dim == layer_shapes(model.config)[0].head_dim
    save_checkpoint(pruned, tiny_tokenizer(), tmp_path / "p")
    ids = random_ids()
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(tmp_path / "p")(ids).logits,
                                   pruned(ids).logits)


def test_a_random_checkpoint_is_written_to_disk_and_streams(tmp_path):
    from edgecore.catalogue import write_random_checkpoint
    from edgecore.model_layers import StreamedLayers

    path = write_random_checkpoint("llama-3.2-1b", tmp_path / "ckpt", layers=1)
    layers = StreamedLayers(path)
    assert layers.dtype == torch.bfloat16 and layers.shapes[0].ffn == 8192
    assert layers.weight(0, "down_proj").shape == (2048, 8192)


def test_every_catalogue_shape_is_supported():
    assert SUPPORTED == list(CATALOGUE)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen2.5-0.5b", "gemma-3-270m"])
def test_gprune_on_a_real_shape(name):
    model = random_model(name, layers=1, vocab=VOCAB)
    windows = {s: random_ids(batch=2, length=32, seed=i) for i, s in enumerate(("a", "b"))}
    calib = collect(model, windows, CalibConfig(sources=tuple(windows), n_samples=2, seq_len=32, sample_tokens=32))
    recipe = PruneRecipe(model=name, sparsity=0.35, align=32, method=method_config("gprune"), reconstruct=False)
    pruned, _ = prune_model(model, tiny_tokenizer(), recipe, calibration=calib)
    assert 0.3 <= 1 - prunable_params(pruned.config) / prunable_params(model.config) <= 0.4
    with torch.no_grad():
        assert torch.isfinite(pruned(random_ids()).logits).all()


@pytest.mark.parametrize("model_type", ["phi3", "gpt2", "gemma2"])
def test_architectures_not_in_the_adapters_are_refused_in_one_line(model_type):
    with pytest.raises(GPruneError, match=r"unsupported architecture .*; supported: llama, mistral, qwen2, qwen3, "
                                          r"gemma3_text, gprune_llama, gprune_gemma3$"):
        layer_shapes(AutoConfig.for_model(model_type))
