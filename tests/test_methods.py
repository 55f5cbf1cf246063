"""Metrics on hand-made cases, GPrune's unit analysis, budgets, determinism, bad CLI input."""

import json

import pytest
import torch
from click.testing import CliRunner
from tiny import random_ids, tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from edgecore.families import fits_stock_layout
from edgecore.params import neuron_params, prunable_params
from gprune.calibration import CalibConfig, collect
from gprune.methods import METHOD_NAMES, method_config
from gprune.metrics import channel_scores, compensation_bias
from gprune.neuron_groups import outliers, percentile_rank, unit_view
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe
from gprune.stats import ChannelStats
from gprune_edge.cli import cli

W = torch.tensor([[1.0, 2.0], [-3.0, 4.0]])  # [out, in]
X = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # two tokens, two input channels


def stats_of(x):
    s = ChannelStats.zeros(x.shape[-1])
    s.update(x)
    return s


def test_wanda_sp_on_a_hand_made_case():
    # sum_i |W_ij| * ||X_j||: channel 0 -> (1 + 3) * sqrt(10), channel 1 -> (2 + 4) * 2
    torch.testing.assert_close(channel_scores(W, stats_of(X), "wanda-sp"),
                               torch.tensor([4 * 10 ** 0.5, 12.0], dtype=torch.float64))


def test_flap_on_a_hand_made_case():
    # Var(X_j) * ||W[:, j]||^2: both variances 2; column norms^2 10 and 20
    torch.testing.assert_close(channel_scores(W, stats_of(X), "flap"), torch.tensor([20.0, 40.0], dtype=torch.float64))


def test_bias_compensation_adds_the_removed_mean_output():
    bias = compensation_bias(W, stats_of(X).mean, torch.tensor([1]))  # mean of channel 1 is 1
    assert bias.tolist() == [2.0, 4.0]


def test_sensitivity_is_the_rank_spread_across_datasets():
    scores = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])  # units 0 and 2 swap ranks, unit 1 stays
    view = unit_view(scores, torch.ones(3), torch.ones(3))
    assert percentile_rank(torch.tensor([5.0, 1.0, 3.0])).tolist() == [1.0, 0.0, 0.5]
    assert view.sensitivity.tolist() == [0.5, 0.0, 0.5]
    assert view.mean_rank.tolist() == [0.5, 0.5, 0.5]


def test_massive_activation_units_are_found():
    rms = torch.tensor([[1.0, 1.2, 0.9, 500.0, 1.1]])
    assert outliers(rms, 20.0).tolist() == [False, False, False, True, False]


@pytest.fixture(scope="module")
def tiny_setup():
    model, tok = tiny_model("llama", layers=3), tiny_tokenizer()
    windows = {name: random_ids(batch=4, length=32, seed=s) for s, name in enumerate(("a", "b", "c"))}
    calib = collect(model, windows, CalibConfig(sources=tuple(windows), n_samples=4, seq_len=32, sample_tokens=48))
    return model, tok, calib


def recipe_of(method, options=None, **fields):
    return PruneRecipe(method=method_config(method, options), **fields)


@pytest.mark.parametrize("method", ["gprune", "flap", "wanda-sp", "magnitude", "random"])
@pytest.mark.parametrize("sparsity", [0.2, 0.5])
def test_budget_met_within_alignment_rounding(tiny_setup, method, sparsity):
    model, tok, calib = tiny_setup
    align = 8
    pruned, plan = prune_model(model, tok, recipe_of(method, sparsity=sparsity, align=align), calibration=calib)
    assert all(len(k.ffn) % align == 0 for k in plan.keep)
    before, after = prunable_params(model.config), prunable_params(pruned.config)
    # rounding: at most half an aligned block per layer, plus one KV group where groups go whole
    slack = (len(plan.keep) * (align / 2 * neuron_params(64) + 64 * 16 * 6)) / before
    assert abs((1 - after / before) - sparsity) <= slack + 1e-9


def test_gprune_is_deterministic_and_reports_diagnostics(tiny_setup):
    model, tok, calib = tiny_setup
    recipe = recipe_of("gprune", sparsity=0.35, align=8, seed=3)
    (_, a), (_, b) = prune_model(model, tok, recipe, calib), prune_model(model, tok, recipe, calib)
    for ka, kb in zip(a.keep, b.keep):
        assert torch.equal(ka.ffn, kb.ffn) and torch.equal(ka.kv_groups, kb.kv_groups)
        assert torch.equal(ka.down_bias, kb.down_bias)
    d = a.diagnostics
    json.dumps(d)
    assert {"layers", "modules", "switched_modules", "sensitivity_histogram", "protected_neurons"} <= set(d)


@pytest.mark.parametrize("opts", [{"sensitivity": False}, {"modules": 1}, {"reliability": False},
                                  {"outliers": False}, {"measured": False}, {"lam": 0.0}, {"per_dataset": False},
                                  {"bias_comp": False}])
def test_every_gprune_step_can_be_switched_off(tiny_setup, opts):
    model, tok, calib = tiny_setup
    pruned, _ = prune_model(model, tok, recipe_of("gprune", opts, sparsity=0.3, align=8), calibration=calib)
    pruned(random_ids())


def test_prune_model_leaves_the_source_untouched(tiny_setup):
    model, tok, calib = tiny_setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, _ = prune_model(model, tok, recipe_of("flap", sparsity=0.3, align=8), calibration=calib)
    assert prunable_params(pruned.config) < prunable_params(model.config)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- CLI bad input


@pytest.fixture
def tiny_dir(tmp_path):
    path = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_failure(result, out, *needles):
    assert result.exit_code != 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def text_file(tmp_path, n_docs, doc_len):
    path = tmp_path / "text.txt"
    path.write_text("\n\n".join("".join(chr(33 + (i * 7 + j) % 90) for j in range(doc_len)) for i in range(n_docs)))
    return path


def test_unknown_source(tmp_path, tiny_dir):
    out = tmp_path / "out"
    assert_clean_failure(run("prune", "-m", tiny_dir, "--method", "gprune", "-s", 0.3, "--align", 8,
                             "--calib", "wiki,klingon", "--out", out), out, "klingon")


def test_empty_calibration_text(tmp_path, tiny_dir):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    out = tmp_path / "out"
    assert_clean_failure(run("prune", "-m", tiny_dir, "--method", "flap", "-s", 0.3, "--align", 8,
                             "--calib", tmp_path / "empty.txt", "--out", out), out, "empty")


def test_too_short_calibration_text(tmp_path, tiny_dir):
    out = tmp_path / "out"
    source = text_file(tmp_path, 6, 40)
    assert_clean_failure(run("prune", "-m", tiny_dir, "--method", "gprune", "-s", 0.3, "--align", 8,
                             "--calib", source, "--n-samples", 64, "--seq-len", 64, "--out", out), out, "too few")


def test_sparsity_the_alignment_cannot_reach(tmp_path, tiny_dir):
    out = tmp_path / "out"  # align 64 of 96 neurons: every layer keeps 64, so 0.8 is out of reach
    assert_clean_failure(run("prune", "-m", tiny_dir, "--method", "wanda-sp", "-s", 0.8, "--align", 64,
                             "--out", out), out, "reachable")


def test_budget_that_would_empty_layers(tmp_path, tiny_dir):
    out = tmp_path / "out"
    assert_clean_failure(run("prune", "-m", tiny_dir, "--method", "gprune", "-s", 0.97, "--align", 8,
                             "--out", out), out, "empty layers")


def test_gprune_cli_end_to_end_with_a_local_file(tmp_path, tiny_dir):
    out = tmp_path / "out"
    source = text_file(tmp_path, 40, 300)
    result = run("prune", "-m", tiny_dir, "--method", "gprune", "--option", "metric=wanda-sp", "-s", 0.3, "--align", 8,
                 "--calib", source, "--n-samples", 4, "--seq-len", 32, "--option", "reliability=false",
                 "--option", "lam=0.5",
                 "--calib-cache", tmp_path / "cache", "--out", out)
    assert result.exit_code == 0, result.output
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["method"]["metric"] == "wanda-sp" and recipe["calib"] == [str(source)]
    assert recipe["method"]["reliability"] is False and recipe["method"]["lam"] == 0.5
    assert PruneRecipe.from_dict(recipe).n_samples == 4
    # the run repeats from its folder: same recipe, same widths
    again = tmp_path / "again"
    result = run("prune", "--recipe", out / "recipe.json", "--calib-cache", tmp_path / "cache", "--out", again)
    assert result.exit_code == 0, result.output
    assert json.loads((again / "recipe.json").read_text()) == recipe
    assert json.loads((again / "config.json").read_text()) == json.loads((out / "config.json").read_text())
    summary = json.loads((out / "prune_summary.json").read_text())
    assert summary["diagnostics"]["modules"] and (out / "prune_plot.png").stat().st_size > 0


def test_retired_options_load_at_their_neutral_value_and_are_refused_otherwise(capsys):
    """Options of the low-sparsity experiments left the product: a recipe naming one at the value
    that did what GPrune does now loads with a note; any other value is refused, naming what to drop."""
    assert method_config("gprune", {"gains": "local", "search": 0, "chunk": 0}) == method_config("gprune")
    assert "option 'chunk' was removed" in capsys.readouterr().err
    for key, value in (("gains", "measured"), ("search", 8), ("layer_cap", 2.0), ("outlier_factor", 10.0),
                       ("propagation", True)):
        with pytest.raises(GPruneError, match=f"drop '{key}'"):
            method_config("gprune", {key: value})


def test_planners_are_keyed_by_config_type_and_get_only_config_and_target(tiny_setup):
    from gprune.methods import PruneTarget, plan

    model, _, calib = tiny_setup
    target = PruneTarget(sparsity=0.3, align=8, seed=1)
    for name in METHOD_NAMES:
        config = method_config(name)
        decided = plan(model, config, target, calib if config.calibrated else None)
        assert len(decided.keep) == 3


@pytest.mark.parametrize("sparsity", [0.2, 0.5])
def test_uniform_gives_every_layer_the_same_widths_within_budget(tiny_setup, sparsity):
    model, tok, calib = tiny_setup
    align = 8
    options = {"uniform": True, "bias_comp": False}
    pruned, plan = prune_model(model, tok, recipe_of("gprune", options, sparsity=sparsity, align=align,
                                                     reconstruct=False), calibration=calib)
    assert len({(len(k.ffn), len(k.kv_groups)) for k in plan.keep}) == 1
    before, after = prunable_params(model.config), prunable_params(pruned.config)
    slack = (len(plan.keep) * (align / 2 * neuron_params(64))) / before  # one width for all: FFN rounding only
    assert abs((1 - after / before) - sparsity) <= slack + 1e-9
    assert fits_stock_layout(pruned.config)  # no compensation biases: saved as the stock architecture
    # the units kept are those GPrune ranks highest in each layer, not the same indices everywhere
    assert len({tuple(k.ffn.tolist()) for k in plan.keep}) > 1


@pytest.mark.parametrize("shape", [
    dict(num_attention_heads=8, num_key_value_heads=4, head_dim=8),  # pruned head counts that do not divide 64
    dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32),  # head_dim != hidden / heads (Qwen3, Gemma 3)
    dict(num_attention_heads=8, num_key_value_heads=1, head_dim=8),  # GQA ratio 8
], ids=["heads-not-dividing", "wide-heads", "gqa-8"])
@pytest.mark.parametrize("method", ["gprune", "magnitude"])
def test_real_model_shape_features_prune_and_run(shape, method):
    model, tok = tiny_model("llama", layers=3, **shape), tiny_tokenizer()
    windows = {name: random_ids(batch=4, length=32, seed=s) for s, name in enumerate(("a", "b"))}
    calib = collect(model, windows, CalibConfig(sources=tuple(windows), n_samples=4, seq_len=32, sample_tokens=48))
    pruned, _ = prune_model(model, tok, recipe_of(method, sparsity=0.35 if method == "gprune" else 0.5, align=8),
                            calibration=calib)
    assert pruned.config.head_dim == shape["head_dim"]
    assert 0.3 <= 1 - prunable_params(pruned.config) / prunable_params(model.config) <= 0.6
    with torch.no_grad():
        assert torch.isfinite(pruned(random_ids()).logits).all()
