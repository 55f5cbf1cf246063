"""Metrics on hand-made cases, GPrune's unit analysis, budgets, determinism, bad CLI input."""

import copy
import dataclasses
import json
import math

import pytest
import torch
from click.testing import CliRunner
from tiny import random_ids, tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from edgecore.families import family_of, fits_stock_layout
from edgecore.params import neuron_params, prunable_params
from gprune.calibration import CalibConfig, collect
from gprune.methods import method_config
from gprune.metrics import channel_scores, compensation_bias
from gprune.neuron_groups import outliers, percentile_rank, unit_view
from gprune.prune import prune_model
from gprune.fisher_gains import fisher_gains
from gprune.output_probe import OutputProbe
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
    result = run("prune", "-m", tiny_dir, "--method", "gprune", "--metric", "wanda-sp", "-s", 0.3, "--align", 8,
                 "--calib", source, "--n-samples", 4, "--seq-len", 32, "--no-reliability", "--lam", 0.5,
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


def test_layer_cap_bounds_what_any_layer_gives_up(tiny_setup):
    model, tok, calib = tiny_setup
    sparsity, cap, align = 0.3, 1.5, 8
    _, plan = prune_model(model, tok, recipe_of("gprune", {"layer_cap": cap}, sparsity=sparsity, align=align), calib)
    floor = math.ceil(96 * (1 - cap * sparsity))  # widths are then rounded to the alignment
    assert all(len(k.ffn) >= floor - align for k in plan.keep)
    assert all(len(k.kv_groups) >= math.ceil(2 * (1 - cap * sparsity)) for k in plan.keep)


def test_fisher_gains_are_positive_and_normalised(tiny_setup):
    model, _, _ = tiny_setup
    gains = fisher_gains(model, random_ids(batch=4, length=32))
    assert gains.shape == (3, 2) and (gains > 0).all() and abs(float(gains.mean()) - 1) < 1e-9


def _full_model_kl(model, ids, projection, channels, values) -> float:
    """KL(dense || probed) per token by two whole-model passes: what OutputProbe.kl must equal."""
    def hold(module, args):
        x = args[0].clone()
        x[..., channels] = values
        return (x,)

    with torch.no_grad():
        dense = model(input_ids=ids).logits.float().log_softmax(-1)
        handle = projection.register_forward_pre_hook(hold)
        try:
            probed = model(input_ids=ids).logits.float().log_softmax(-1)
        finally:
            handle.remove()
    return float((dense.exp() * (dense - probed)).sum(-1).mean())


def test_output_probe_equals_a_whole_model_pass(tiny_setup):
    model, _, _ = tiny_setup
    ids = random_ids(batch=3, length=16)
    probe = OutputProbe(model, ids, batch_size=2)
    family = family_of(model.config)
    layer = family.decoder_layers(model)[1]
    channels, values = torch.tensor([3, 5, 40]), torch.tensor([0.5, -1.0, 0.0])
    for part, projection in (("ffn", family.down_proj(layer)), ("attention", family.o_proj(layer))):
        kl, relative = probe.measure(1, part, channels, values)
        assert kl > 0 and relative > 0
        assert kl == pytest.approx(_full_model_kl(model, ids, projection, channels, values), rel=1e-4)
    assert probe.measure(1, "ffn", torch.tensor([], dtype=torch.long), torch.tensor([])) == (0, 0)


def test_measured_gains_are_recorded(tiny_setup):
    model, tok, calib = tiny_setup
    measured = prune_model(model, tok, recipe_of("gprune", {"gains": "measured"}, sparsity=0.3, align=8,
                                                 reconstruct=False), calib)[1]
    gains = torch.tensor(measured.diagnostics["gains"])
    assert gains.shape == (3, 2) and (gains > 0).all() and float(gains.mean()) == pytest.approx(1, abs=1e-3)
    assert float(gains.std()) > 0.01  # sublayers differ (the random tiny model is no exception)
    local = prune_model(model, tok, recipe_of("gprune", sparsity=0.3, align=8, reconstruct=False), calib)[1]
    assert local.diagnostics["gains"] is None


def test_recipes_from_before_measured_gains_still_load():
    assert method_config("gprune", {"propagation": True}).gains == "fisher"
    assert method_config("gprune", {"propagation": False}).gains == "local"


@pytest.mark.parametrize("gains", ["fisher", "measured"])
def test_the_gains_weight_the_measured_cost(tiny_setup, gains):
    model, tok, calib = tiny_setup
    recipe = recipe_of("gprune", {"gains": gains}, sparsity=0.3, align=8)
    heavy = copy.copy(calib)
    heavy.gains = torch.ones(3, 2)
    heavy.gains[1, 1] = 1e6  # removing anything from layer 1's FFN would cost a million times more
    _, plan = prune_model(model, tok, recipe, calibration=heavy)
    assert len(plan.keep[1].ffn) == 96
    light = copy.copy(calib)
    light.gains = torch.ones(3, 2)
    light.gains[1, 1] = 1e-6  # ... or next to nothing: layer 1's FFN goes first
    _, plan = prune_model(model, tok, recipe, calibration=light)
    assert len(plan.keep[1].ffn) == min(len(k.ffn) for k in plan.keep) < 96


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


def test_the_width_search_prices_what_pruning_does(tiny_setup):
    """The KL the search reports for its widths is the KL of the model pruned to them."""
    model, tok, calib = tiny_setup
    windows = {name: random_ids(batch=4, length=32, seed=s) for s, name in enumerate(("a", "b", "c"))}
    searched = dataclasses.replace(calib, windows=windows)
    recipe = recipe_of("gprune", {"search": 8}, sparsity=0.3, align=8, reconstruct=False, seed=2)
    pruned, plan = prune_model(model, tok, recipe, calibration=searched)
    log = plan.diagnostics["search"]
    assert log["accepted"] > 0 and log["price_end"] < log["price_start"]
    ids = torch.cat(list(windows.values()))
    with torch.no_grad():
        dense = model(input_ids=ids).logits.float().log_softmax(-1)
        kl = float((dense.exp() * (dense - pruned(input_ids=ids).logits.float().log_softmax(-1))).sum(-1).mean())
    assert kl == pytest.approx(log["price_end"], rel=1e-4)
    before, after = prunable_params(model.config), prunable_params(pruned.config)
    assert 0.3 <= 1 - after / before <= 0.3 + 8 * neuron_params(64) / before
    greedy = prune_model(model, tok, recipe_of("gprune", sparsity=0.3, align=8, reconstruct=False), searched)[1]
    assert greedy.diagnostics["search"] is None
    assert [len(k.ffn) for k in plan.keep] != [len(k.ffn) for k in greedy.keep]


def test_the_width_search_refuses_what_it_cannot_refine():
    for options in ({"search": -1}, {"search": 2, "uniform": True}, {"search": 2, "measured": False}):
        with pytest.raises(GPruneError, match="search"):
            method_config("gprune", options)
