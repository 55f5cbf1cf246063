"""Every family on a tiny random model, as a user runs it: prune at 35% with GPrune and at 50% with
magnitude, save, reload, export GGUF and ONNX, run them in llama.cpp and onnxruntime, logits as
torch's. Families whose llama.cpp architecture holds no per-layer widths (Qwen3, Gemma 3) get their
GGUF from the same recipe made to keep the stock layout (uniform widths, no added biases, GPrune still
reconstructed); the per-layer one is refused in one line."""

import pytest
import torch
from export_helpers import artifact_path, check_against_torch, needs_llama_cpp, write
from tiny import FAMILIES, random_ids, tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM

from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError
from edgecore.families import family_of, fits_stock_layout
from edgecore.params import prunable_params
from exporters.source import load_source
from gprune.calibration import CalibConfig, collect
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe

# llama.cpp evaluates GELU (Gemma 3) from an f16 table: its logits sit ~1e-3 further from torch's
TOLERANCE = {"gemma3": 1e-2}


def pruned_checkpoint(path, family: str, method: str, uniform: bool = False):
    model = tiny_model(family)
    windows = {name: random_ids(batch=4, length=32, seed=s) for s, name in enumerate(("a", "b"))}
    calib = collect(model, windows, CalibConfig(sources=tuple(windows), n_samples=4, seq_len=32, sample_tokens=48))
    if method == "gprune":
        recipe = PruneRecipe(method=method_config("gprune"), sparsity=0.35, align=8)
    else:
        recipe = PruneRecipe(method=method_config("magnitude"), sparsity=0.5, align=8)
    if uniform:
        recipe = recipe.stock_layout()
    pruned, _ = prune_model(model, tiny_tokenizer(), recipe, calibration=calib)
    removed = 1 - prunable_params(pruned.config) / prunable_params(model.config)
    assert abs(removed - recipe.sparsity) < 0.1, removed
    save_checkpoint(pruned, tiny_tokenizer(), path)
    ids = random_ids()
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(path)(ids).logits, pruned(ids).logits)
    return load_source(path)


def assert_runs_as_torch(source, fmt: str, dtype: str, dest, family: str):
    checked = check_against_torch(write(source, fmt, dtype, artifact_path(dest, fmt)), source)
    assert checked.parity["max_abs_logit_diff"] < TOLERANCE.get(family, 1e-3), (fmt, checked.parity)
    assert checked.parity["top1_agreement"] >= 0.99 and checked.generation_matches, fmt


@needs_llama_cpp
@pytest.mark.parametrize("method", ["gprune", "magnitude"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_prune_reload_export_and_run(tmp_path, family, method):
    source = pruned_checkpoint(tmp_path / "pruned", family, method)
    assert_runs_as_torch(source, "onnx", "fp32", tmp_path / "onnx", family)
    if family_of(source.config).gguf_per_layer or fits_stock_layout(source.config):
        assert_runs_as_torch(source, "gguf", "f32", tmp_path / "gguf", family)
        return
    with pytest.raises(GPruneError, match=f"llama.cpp has no architecture for a {family}.* uniform=true"):
        write(source, "gguf", "f32", tmp_path / "refused.gguf")
    uniform = pruned_checkpoint(tmp_path / "uniform", family, method, uniform=True)
    assert fits_stock_layout(uniform.config)
    assert_runs_as_torch(uniform, "gguf", "f32", tmp_path / "gguf", family)


def test_a_gemma3_setting_llama_cpp_ignores_is_refused_for_gguf(tmp_path):
    """Gemma 3 has no logit soft-capping and llama.cpp's gemma3 reads none: a model that sets it
    would run differently there, so its GGUF is refused in one line."""
    model = tiny_model("gemma3", final_logit_softcapping=30.0)
    save_checkpoint(model, tiny_tokenizer(), tmp_path / "capped")
    with pytest.raises(GPruneError, match="llama.cpp's gemma3 ignores final_logit_softcapping"):
        write(load_source(tmp_path / "capped"), "gguf", "f32", tmp_path / "capped.gguf")
