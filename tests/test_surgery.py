"""Surgery and the pruned-model format on tiny random Llama, Mistral and Qwen2 models."""

import copy
import json
import subprocess
import sys

import pytest
import torch
from tiny import random_ids, tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM

import gprune  # noqa: F401  (registers the pruned format)
from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError
from edgecore.families import family_of, layer_shapes
from gprune.surgery import LayerKeep, aligned_width, check_alignment, keep_all, resize

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma3"]


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def uneven_keep(model):
    """Different kept neurons and KV groups per layer."""
    shapes = layer_shapes(model.config)
    g = torch.Generator().manual_seed(3)
    return [LayerKeep(torch.randperm(s.ffn, generator=g)[: 16 * (i + 1)], torch.tensor([i % s.kv_heads]))
            for i, s in enumerate(shapes)]


def masked_copy(model, keep):
    """The dense model with every removed unit's output weights zeroed: what surgery must reproduce."""
    masked = copy.deepcopy(model)
    shapes = layer_shapes(model.config)
    for layer, shape, k in zip(masked.model.layers, shapes, keep):
        drop = torch.ones(shape.ffn, dtype=torch.bool)
        drop[k.ffn] = False
        layer.mlp.down_proj.weight.data[:, drop] = 0
        heads = torch.ones(shape.kv_heads, dtype=torch.bool)
        heads[k.kv_groups] = False
        cols = heads.repeat_interleave(shape.q_per_kv * shape.head_dim)
        layer.self_attn.o_proj.weight.data[:, cols] = 0
    return masked


@pytest.mark.parametrize("family", FAMILIES)
def test_keep_everything_gives_identical_logits(family):
    model, ids = tiny_model(family), random_ids()
    assert torch.equal(logits(resize(model, keep_all(model.config)), ids), logits(model, ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_equals_dense_with_units_masked(family):
    model, ids = tiny_model(family), random_ids()
    keep = uneven_keep(model)
    pruned = resize(model, keep)
    assert [s.ffn for s in layer_shapes(pruned.config)] == [16, 32, 48]
    assert [s.kv_heads for s in layer_shapes(pruned.config)] == [1, 1, 1]
    torch.testing.assert_close(logits(pruned, ids), logits(masked_copy(model, keep), ids), atol=1e-5, rtol=1e-5)


def test_compensation_bias_is_added_to_the_layer_output():
    model, ids = tiny_model("llama"), random_ids()
    keep = keep_all(model.config)
    keep[1].down_bias = torch.full((64,), 0.5)
    pruned = resize(model, keep)
    assert pruned.config.down_proj_bias and not pruned.config.o_proj_bias
    shifted = copy.deepcopy(model)
    shifted.model.layers[1].mlp.down_proj.bias = torch.nn.Parameter(torch.full((64,), 0.5))
    torch.testing.assert_close(logits(pruned, ids), logits(shifted, ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_save_reload_with_the_package(tmp_path, family):
    model, ids = tiny_model(family), random_ids()
    pruned = resize(model, uneven_keep(model))
    save_checkpoint(pruned, tiny_tokenizer(), tmp_path / "p", extra_files={"recipe.json": json.dumps({"method": "test"})})
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "p")
    assert isinstance(reloaded, family_of(model.config).pruned_causal_lm)
    assert torch.equal(logits(reloaded, ids), logits(pruned, ids))
    out = reloaded.generate(ids[:1], max_new_tokens=5, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 5)
    assert (tmp_path / "p" / "recipe.json").exists() and (tmp_path / "p" / "modeling_gprune.py").exists()
    assert not list((tmp_path / "p").glob("*.bin"))


REMOTE_CODE_SCRIPT = """
import sys, torch
sys.modules["gprune"] = None  # the package must not be importable here
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
ids = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    torch.save(m(ids).logits, sys.argv[3])
print(type(m).__module__, m.generate(ids[:1], max_new_tokens=4, do_sample=False).shape[1])
"""


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_reload_with_trust_remote_code_without_the_package(tmp_path, family):
    model, ids = tiny_model(family), random_ids()
    keep = uneven_keep(model)
    keep[0].o_bias = torch.full((64,), 0.1)
    pruned = resize(model, keep)
    save_checkpoint(pruned, tiny_tokenizer(), tmp_path / "p")
    torch.save(ids, tmp_path / "ids.pt")
    done = subprocess.run([sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path / "p"), str(tmp_path / "ids.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "transformers_modules" in done.stdout and done.stdout.split()[-1] == str(ids.shape[1] + 4)
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), logits(pruned, ids))


def test_uniform_widths_are_saved_as_the_stock_architecture(tmp_path):
    model, ids = tiny_model("qwen2"), random_ids()
    keep = [LayerKeep(torch.arange(32), torch.tensor([1])) for _ in range(3)]
    pruned = resize(model, keep)
    save_checkpoint(pruned, tiny_tokenizer(), tmp_path / "u")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "u")
    assert type(reloaded).__name__ == "Qwen2ForCausalLM" and reloaded.config.intermediate_size == 32
    assert not (tmp_path / "u" / "modeling_gprune.py").exists()
    torch.testing.assert_close(logits(reloaded, ids), logits(pruned, ids))


def test_aligned_width_rounds_and_never_reaches_zero():
    assert aligned_width(100, 32, 1536) == 96
    assert aligned_width(3, 32, 1536) == 32
    assert aligned_width(-50, 32, 1536) == 32
    assert aligned_width(1530, 32, 1536) == 1536
    assert aligned_width(2000, 256, 1536) == 1536


def test_alignment_wider_than_a_layer_is_refused():
    shapes = layer_shapes(tiny_model().config)
    check_alignment(shapes, 96)
    with pytest.raises(GPruneError, match="wider than the narrowest FFN layer"):
        check_alignment(shapes, 128)


def test_keep_sets_that_empty_a_layer_are_refused():
    model = tiny_model()
    keep = keep_all(model.config)
    keep[2].ffn = torch.tensor([], dtype=torch.long)
    with pytest.raises(GPruneError, match="layer 2 would keep no FFN"):
        resize(model, keep)


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_states_are_recorded_for_every_layer_kind(family):
    """Distillation's hidden-state loss reads output_hidden_states: the pruned format records them
    whichever stock layer it is built from (Qwen3's and Gemma 3's are not Llama's)."""
    model, ids = tiny_model(family), random_ids()
    with torch.no_grad():
        pruned = resize(model, keep_all(model.config))(ids, output_hidden_states=True).hidden_states
        dense = model(ids, output_hidden_states=True).hidden_states
    assert len(pruned) == len(dense) == 4
    torch.testing.assert_close(pruned[-1], dense[-1])
