"""Streamed pruning (`prune` on a checkpoint directory, one layer in memory at a time) gives the same
plan and weights as pruning the model in memory; sharded, bf16 and fp16 checkpoints stream; a shard
missing or cut short fails in one line naming the file."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from tiny import tiny_model, tiny_tokenizer
from transformers import AutoTokenizer

from edgecore.errors import GPruneError
from edgecore.loading import load_model
from edgecore.model_layers import StreamedLayers
from edgecore.safetensors_io import INDEX_FILE
from gprune.methods import method_config
from gprune.prune import prune, prune_model
from gprune.recipe import PruneRecipe
from gprune_edge.cli import cli


def saved(model, path, dtype=torch.float32, shard=None):
    model.to(dtype).save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
    tiny_tokenizer().save_pretrained(path)
    return path


def stored(directory) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def recipe_for(model_dir, method="gprune", **fields):
    return PruneRecipe(model=str(model_dir), method=method_config(method), sparsity=0.3, align=8, n_samples=4,
                       seq_len=32, **fields)


def in_memory(model, recipe, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(recipe.model)  # as loaded for the streamed run
    pruned, plan = prune_model(model, tokenizer, recipe, context=_context(tmp_path))
    state = pruned.state_dict()
    if pruned.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    return state, plan


def _context(tmp_path):
    from edgecore.run_context import RunContext
    return RunContext(device="cpu", calib_cache=str(tmp_path / "calib"))


@pytest.mark.parametrize("family,method", [("llama", "gprune"), ("llama", "flap"), ("llama", "magnitude"),
                                           ("qwen2", "gprune"), ("qwen3", "gprune"), ("gemma3", "gprune")])
def test_streamed_equals_in_memory(tmp_path, family, method):
    model = tiny_model(family, layers=3)
    recipe = recipe_for(saved(model, tmp_path / "dense"), method)
    expected, plan = in_memory(model, recipe, tmp_path)
    prune(recipe, tmp_path / "out", context=_context(tmp_path))
    got = stored(tmp_path / "out")
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    summary = json.loads((tmp_path / "out" / "prune_summary.json").read_text())
    assert [s["ffn"] for s in summary["layers"]] == [len(k.ffn) for k in plan.keep]


def test_a_sharded_checkpoint_streams_to_the_same_model(tmp_path):
    model = tiny_model("llama", layers=3)
    whole, sharded = saved(model, tmp_path / "whole"), saved(model, tmp_path / "sharded", shard="40KB")
    assert (sharded / INDEX_FILE).is_file() and len(list(sharded.glob("*.safetensors"))) > 2
    for source in (whole, sharded):
        prune(recipe_for(source), tmp_path / f"out-{source.name}", context=_context(tmp_path))
    a, b = stored(tmp_path / "out-whole"), stored(tmp_path / "out-sharded")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_output_is_sharded_with_an_index_when_it_is_large(tmp_path, monkeypatch):
    import edgecore.safetensors_io as io
    monkeypatch.setattr(io, "SHARD_BYTES", 30_000)
    model = tiny_model("llama", layers=3)
    prune(recipe_for(saved(model, tmp_path / "dense")), tmp_path / "out", context=_context(tmp_path))
    index = json.loads((tmp_path / "out" / INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) > 1
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True)  # standard tools open it


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_checkpoints_stream_and_stay_in_their_precision(tmp_path, dtype):
    model = tiny_model("llama", layers=3)
    recipe = recipe_for(saved(model, tmp_path / "dense", dtype))
    prune(recipe, tmp_path / "out", context=_context(tmp_path))
    got = stored(tmp_path / "out")
    assert {t.dtype for t in got.values()} == {dtype}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    # the same as pruning the checkpoint loaded in memory (in float32), then storing in its precision
    expected, _ = in_memory(load_model(recipe.model)[0], recipe, tmp_path)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor.to(dtype)), name


def test_only_one_layer_is_in_memory_at_a_time(tmp_path):
    layers = StreamedLayers(saved(tiny_model("llama", layers=3), tmp_path / "dense"))
    for i, layer in layers.each():
        assert not any(p.is_meta for p in layer.parameters())
        skeleton_layers = layers.family.decoder_layers(layers.skeleton)
        assert all(p.is_meta for p in skeleton_layers.parameters())


def test_a_shard_missing_from_the_index_is_named(tmp_path):
    source = saved(tiny_model("llama", layers=3), tmp_path / "dense", shard="40KB")
    victim = sorted(source.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(GPruneError, match=f"{victim}: listed in {INDEX_FILE} but missing"):
        StreamedLayers(source)
    result = CliRunner().invoke(cli, ["prune", "--model", str(source), "--sparsity", "0.2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and victim.name in result.output and len(result.output.strip().splitlines()) == 1


def test_a_truncated_shard_is_named(tmp_path):
    source = saved(tiny_model("llama", layers=3), tmp_path / "dense", shard="40KB")
    victim = sorted(source.glob("model-*.safetensors"))[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    result = CliRunner().invoke(cli, ["prune", "--model", str(source), "--sparsity", "0.2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and f"{victim}: truncated safetensors file" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_shard_files_are_safetensors_that_the_library_reads(tmp_path):
    from edgecore.safetensors_io import write_safetensors

    g = torch.Generator().manual_seed(0)
    tensors = {"w.bf16": torch.randn(3, 5, generator=g).bfloat16(), "w.f16": torch.randn(7, generator=g).half(),
               "w.f32": torch.randn(2, 3, 4, generator=g), "ids": torch.arange(5), "mask": torch.tensor([True, False]),
               "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5)}
    write_safetensors(tmp_path / "x.safetensors", tensors)
    back = load_file(tmp_path / "x.safetensors")
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
