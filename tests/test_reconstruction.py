"""Training-free reconstruction (gprune.reconstruction) and its place in the recipe."""

import json

import pytest
import torch
from click.testing import CliRunner
from tiny import random_ids, tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from edgecore.families import fits_stock_layout
from gprune.calibration import CalibConfig, collect
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import RECIPE_VERSION, PruneRecipe, ReconstructConfig
from gprune.reconstruction import reconstruct
from gprune.surgery import resize, with_biases
from gprune_edge.cli import cli


def magnitude_pruned(model, sparsity=0.4):
    recipe = PruneRecipe(method=method_config("magnitude"), sparsity=sparsity, align=8, reconstruct=False)
    _, plan = prune_model(model, tiny_tokenizer(), recipe)
    return resize(model, with_biases(plan.keep, model.config.hidden_size))


@torch.no_grad()
def output_error(dense, pruned, ids) -> float:
    d = dense(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    p = pruned(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    return float((p - d).pow(2).sum() / d.pow(2).sum())


@pytest.mark.parametrize("target", ["residual", "sublayer"])
def test_reconstruction_lowers_the_error_on_windows_it_was_not_fitted_on(target):
    dense = tiny_model("llama", layers=3)
    pruned = magnitude_pruned(dense)
    fit = {"a": random_ids(batch=16, length=32, seed=1), "b": random_ids(batch=8, length=32, seed=2)}
    held_out = random_ids(batch=8, length=32, seed=9)
    before = output_error(dense, pruned, held_out)
    diag = reconstruct(dense, pruned, fit, ridge=0.1, target=target)
    after = output_error(dense, pruned, held_out)
    assert after < 0.8 * before
    assert len(diag["output_error"]) == 3 and diag["tokens"] == 24 * 32


def test_a_huge_ridge_keeps_the_weights():
    dense = tiny_model("llama", layers=2)
    pruned = magnitude_pruned(dense)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    reconstruct(dense, pruned, {"a": random_ids(batch=8, length=32)}, ridge=1e9)
    for k, v in pruned.state_dict().items():
        assert torch.allclose(v, before[k], atol=1e-4), k


def test_every_source_weighs_the_same():
    """Doubling one source's windows (same text twice) changes nothing: sources are averaged."""
    dense = tiny_model("llama", layers=2)
    a, b = random_ids(batch=8, length=32, seed=1), random_ids(batch=8, length=32, seed=2)
    once, twice = magnitude_pruned(dense), magnitude_pruned(dense)
    reconstruct(dense, once, {"a": a, "b": b})
    reconstruct(dense, twice, {"a": torch.cat([a, a]), "b": b})
    for (k, v), w in zip(once.state_dict().items(), twice.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-4), k


def test_reconstruct_defaults_follow_the_method_and_old_recipes_repeat_their_run():
    assert PruneRecipe(method=method_config("gprune")).reconstruct is True
    assert PruneRecipe(method=method_config("flap")).reconstruct is False
    assert PruneRecipe(method=method_config("flap"), reconstruct=True).reconstruct is True
    v2 = PruneRecipe.from_dict({"version": 2, "sparsity": 0.2, "method": {"name": "gprune"}})
    assert v2.reconstruct is False
    saved = PruneRecipe(method=method_config("gprune")).to_dict()
    assert saved["version"] == RECIPE_VERSION and saved["reconstruct"] is True and saved["reconstruction"]["ridge"] == 1.0
    assert PruneRecipe.from_dict(saved) == PruneRecipe(method=method_config("gprune"))


@pytest.mark.parametrize("bad, needle", [({"ridge": 0}, "ridge"), ({"windows": 0}, "windows"),
                                         ({"target": "logits"}, "target"), ({"ridg": 1.0}, "ridg")])
def test_bad_reconstruction_settings_are_refused(bad, needle):
    with pytest.raises(GPruneError, match=needle):
        PruneRecipe.from_dict({"reconstruction": bad})
    with pytest.raises(GPruneError):
        ReconstructConfig.from_dict(bad)


def test_prune_cli_reconstructs_and_can_be_told_not_to(tmp_path):
    model = tiny_model("llama", layers=2)
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join("".join(chr(33 + (i * 7 + j) % 90) for j in range(300)) for i in range(40)))
    common = ["prune", "-m", str(tmp_path / "tiny"), "--method", "magnitude", "-s", "0.3", "--align", "8",
              "--calib", str(text), "--n-samples", "4", "--seq-len", "32"]
    on = CliRunner().invoke(cli, common + ["--reconstruct", "--ridge", "0.5", "--out", str(tmp_path / "on")])
    off = CliRunner().invoke(cli, common + ["--out", str(tmp_path / "off")])
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    recipe = json.loads((tmp_path / "on" / "recipe.json").read_text())
    assert recipe["reconstruct"] is True and recipe["reconstruction"]["ridge"] == 0.5
    assert json.loads((tmp_path / "off" / "recipe.json").read_text())["reconstruct"] is False
    summary = json.loads((tmp_path / "on" / "prune_summary.json").read_text())
    assert len(summary["diagnostics"]["reconstruction"]["output_error"]) == 2


def test_stock_layout_reconstructs_without_biases():
    """The recipe made for llama.cpp's qwen3 / gemma3 (uniform widths, no added biases) still
    reconstructs: the projections are refitted without a bias column, and the error falls."""
    dense = tiny_model("qwen3", layers=3)
    recipe = PruneRecipe(method=method_config("gprune"), sparsity=0.35, align=8).stock_layout()
    assert recipe.reconstruct and not recipe.reconstruction.bias and recipe.method.uniform
    fit = {"a": random_ids(batch=8, length=32, seed=1), "b": random_ids(batch=8, length=32, seed=2)}
    calib = collect(dense, fit, CalibConfig(sources=tuple(fit), n_samples=8, seq_len=32, sample_tokens=48))
    plain, plan = prune_model(dense, tiny_tokenizer(), recipe.replace(reconstruct=False), calibration=calib)
    pruned = resize(dense, plan.keep)
    reconstruct(dense, pruned, fit, ridge=0.1)
    assert fits_stock_layout(pruned.config) and all(layer.self_attn.o_proj.bias is None for layer in pruned.model.layers)
    held_out = random_ids(batch=8, length=32, seed=9)
    assert output_error(dense, pruned, held_out) < output_error(dense, plain, held_out)


def test_a_method_without_uniform_widths_has_no_stock_layout():
    with pytest.raises(GPruneError, match="method 'flap' gives every layer its own widths"):
        PruneRecipe(method=method_config("flap"), sparsity=0.2).stock_layout()


def test_normalized_sublayers_are_fitted_to_the_dense_projections():
    """Gemma 3 normalizes each sublayer's output: reconstruction fits projections to the dense ones
    (target "sublayer", whatever was asked), and the error on held-out windows falls."""
    dense = tiny_model("gemma3", layers=3)
    pruned = magnitude_pruned(dense)
    held_out = random_ids(batch=8, length=32, seed=9)
    before = output_error(dense, pruned, held_out)
    diag = reconstruct(dense, pruned, {"a": random_ids(batch=16, length=32, seed=1)}, ridge=0.1, target="residual")
    assert diag["target"] == "sublayer" and output_error(dense, pruned, held_out) < 0.95 * before


def test_the_in_place_solve_matches_a_general_solver():
    from gprune.reconstruction import spd_solve_
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 300, dtype=torch.float64, generator=g)
    a = x.T @ x / 400 + 0.1 * torch.eye(300, dtype=torch.float64)
    b = torch.randn(300, 7, dtype=torch.float64, generator=g)
    expected = torch.linalg.solve(a, b)
    torch.testing.assert_close(spd_solve_(a.clone(), b.clone(), block=64), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(spd_solve_(a.clone(), b.clone(), block=1024), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_the_dual_fit_for_few_tokens_equals_the_normal_equations(bias):
    """Fewer tokens than inputs: the fit from the tokens themselves (Samples) is the normal equations' fit."""
    from gprune.reconstruction import Normal, Samples, least_squares
    g = torch.Generator().manual_seed(0)
    proj = torch.nn.Linear(96, 24, bias=bias)
    batches = [(torch.randn(2, 10, 96, generator=g), torch.randn(2, 10, 24, generator=g), w) for w in (0.5, 0.1)]
    fits = []
    for form in (Normal, Samples):
        fitted = torch.nn.Linear(96, 24, bias=bias)
        fitted.load_state_dict(proj.state_dict())
        fit = form(fitted)
        with torch.no_grad():
            for x, target, weight in batches:
                fit.update(x, target - fitted(x), weight)
            fit.solve(fitted, ridge=0.05)
        fits.append(fitted.state_dict())
    assert isinstance(least_squares(proj, 40), Samples) and isinstance(least_squares(proj, 200), Normal)
    for name in fits[0]:
        assert not torch.allclose(fits[0][name], proj.state_dict()[name], atol=1e-3), name  # it moved
        torch.testing.assert_close(fits[1][name], fits[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_reconstruction_on_fewer_tokens_than_neurons_equals_the_normal_equations(monkeypatch):
    import gprune.reconstruction as rec
    dense = tiny_model("llama", layers=2)
    few = {"a": random_ids(batch=1, length=24, seed=1), "b": random_ids(batch=1, length=16, seed=2)}
    assert sum(w.numel() for w in few.values()) < dense.config.intermediate_size * 0.6  # the FFN, 40% pruned
    dual, normal = magnitude_pruned(dense), magnitude_pruned(dense)
    reconstruct(dense, dual, few, ridge=0.1)
    monkeypatch.setattr(rec, "least_squares", lambda proj, tokens: rec.Normal(proj))
    reconstruct(dense, normal, few, ridge=0.1)
    for (name, a), b in zip(dual.state_dict().items(), normal.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
