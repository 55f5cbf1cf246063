"""What the tool refuses instead of giving a silently wrong result (exit 0 with a meaningless
figure): weights that do not match the architecture, NaN/Inf weights, a NaN parity figure,
a target that would verify nothing. (Vocabularies that disagree: test_bad_inputs_verify.py.)"""

import math

import pytest
import torch
from bad_inputs import no_leftovers, refused, run, tiny_dir, write_target
from safetensors.torch import load_file, save_file

from edgecore.errors import GPruneError
from runtime_checks.export_parity import check_tolerance
from runtime_checks.parity import Parity


def damage(model_dir, change):
    path = model_dir / "model.safetensors"
    save_file(change(load_file(path)), path)
    return model_dir


@pytest.mark.parametrize("change, needle", [
    (lambda sd: {"foo." + k: v for k, v in sd.items()}, "missing model.embed_tokens.weight"),
    (lambda sd: {k: v for k, v in sd.items() if k != "model.layers.1.mlp.up_proj.weight"},
     "missing model.layers.1.mlp.up_proj.weight"),
    (lambda sd: {**sd, "extra.weight": torch.zeros(2)}, "unexpected extra.weight"),
    (lambda sd: {**sd, "model.layers.0.mlp.up_proj.weight": sd["model.layers.0.mlp.up_proj.weight"][:10]},
     "mis-shaped model.layers.0.mlp.up_proj.weight [10, 64] != [96, 64]"),
], ids=["every-key-prefixed", "one-missing", "one-extra", "mis-shaped"])
@pytest.mark.parametrize("command", ["prune", "export"])
def test_weights_that_do_not_match_the_architecture(tmp_path, change, needle, command):
    model = damage(tiny_dir(tmp_path / "m"), change)
    out = tmp_path / "out"
    args = (["prune", "-m", model, "--method", "magnitude", "-s", 0.2, "--align", 8] if command == "prune"
            else ["export", model, "--format", "gguf", "--dtype", "f16"])
    refused(run(*args, "--out", out), "do not match its config.json", needle)
    no_leftovers(out)


def test_a_nan_weight_is_refused_at_load(tmp_path):
    def poison(sd):
        w = sd["model.layers.2.self_attn.o_proj.weight"].clone()
        w[0, 0] = float("nan")
        return {**sd, "model.layers.2.self_attn.o_proj.weight": w}

    model, out = damage(tiny_dir(tmp_path / "m"), poison), tmp_path / "out.gguf"
    refused(run("export", model, "--format", "gguf", "--dtype", "f16", "--out", out),
            "model.layers.2.self_attn.o_proj.weight holds NaN or Inf")
    no_leftovers(out)


def test_a_nan_parity_figure_fails_the_export_check():
    parity = Parity(tokens=10, top1_agreement=1.0, kl_mean=math.nan, kl_max=math.nan, max_abs_logit_diff=math.nan,
                    mean_abs_logit_diff=math.nan, ppl_reference=10.0, ppl_candidate=math.nan)
    with pytest.raises(GPruneError, match="NaN"):
        check_tolerance(parity, "f16", "gguf export")


def test_a_target_with_no_artifacts_is_refused(tmp_path):
    out = tmp_path / "build"
    refused(run("build", "--target", write_target(tmp_path / "t.json", artifacts=[]), "--out", out),
            "lists no artifacts")
    no_leftovers(out)


def test_an_architecture_outside_the_adapters_is_refused_naming_the_supported_ones(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = tmp_path / "phi3"
    AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "phi3", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
        pad_token_id=0)).save_pretrained(model)
    out = tmp_path / "p"
    refused(run("prune", "--model", model, "--sparsity", "0.2", "--out", out),
            "unsupported architecture 'Phi3ForCausalLM'", "supported: llama, mistral, qwen2, qwen3, gemma3_text")
    no_leftovers(out)
