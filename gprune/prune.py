"""The pruning verbs. `prune_model` is the one path from a recipe to a pruned model, in
memory; `prune` is the file-to-file call behind `gprune-edge prune`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgecore.checkpoint import save_checkpoint
from edgecore.families import family_of, layer_shapes
from edgecore.loading import load_config, load_model
from edgecore.outputs import claim_output
from edgecore.params import prunable_params
from edgecore.run_context import RunContext
from gprune import methods
from gprune.allocation import check_reachable
from gprune.calibration import Calibration, calibrate, calibration_windows
from gprune.diagnostics import PLOT_FILE, render_plot
from gprune.recipe import RECIPE_FILE, PruneRecipe
from gprune.reconstruction import reconstruct
from gprune.surgery import check_alignment, resize, with_biases

SUMMARY_FILE = "prune_summary.json"


def prune_model(model, tokenizer, recipe: PruneRecipe, calibration: Calibration | None = None,
                context: RunContext | None = None):
    """(pruned model, plan): `model` pruned as `recipe` says; `model` itself is left untouched.

    Methods that read activations calibrate on `recipe.calib` unless `calibration` is given
    (statistics are cached under `context.calib_cache`, default the user cache). With
    `recipe.reconstruct` the kept output projections are then refitted on the calibration
    windows (gprune.reconstruction). Both move one layer at a time to `context.device`."""
    context = (context or RunContext()).resolve()
    device = context.torch_device()
    shapes = layer_shapes(model.config)
    check_alignment(shapes, recipe.align)
    check_reachable(shapes, model.config.hidden_size, family_of(model.config).qkv_bias, recipe.sparsity,
                    recipe.align)
    if recipe.method.calibrated and calibration is None:
        cache = Path(context.calib_cache) if context.calib_cache else None
        calibration = calibrate(model, tokenizer, recipe.calib_config(), cache, device)
    plan = methods.plan(model, recipe.method, recipe.target(), calibration if recipe.method.calibrated else None)
    if not recipe.reconstruct:
        return resize(model, plan.keep), plan
    settings = recipe.reconstruction
    pruned = resize(model, with_biases(plan.keep, model.config.hidden_size) if settings.bias else plan.keep)
    windows = {s: w[:settings.windows] for s, w in calibration_windows(tokenizer, recipe.calib_config()).items()}
    plan.diagnostics["reconstruction"] = reconstruct(model, pruned, windows, settings.ridge, settings.target,
                                                     device=device)
    return pruned, plan


@dataclass
class PruneResult:
    out: Path
    prunable_before: int
    prunable_after: int

    @property
    def sparsity(self) -> float:
        return 1 - self.prunable_after / self.prunable_before


def prune(recipe: PruneRecipe, out: str | Path, overwrite: bool = False,
          context: RunContext | None = None) -> PruneResult:
    """Prune `recipe.model` as the recipe says and write the pruned checkpoint to `out`: model,
    tokenizer, recipe.json, prune_summary.json and prune_plot.png."""
    context = (context or RunContext()).resolve()  # fail before the slow part
    with claim_output(out, overwrite, inputs=[recipe.model]) as out:
        check_alignment(layer_shapes(load_config(recipe.model, context.trust_remote_code)), recipe.align)
        return _prune(recipe, out, overwrite, context)


def _prune(recipe: PruneRecipe, out: Path, overwrite: bool, context: RunContext) -> PruneResult:
    started = time.perf_counter()
    model, tokenizer = load_model(recipe.model, trust_remote_code=context.trust_remote_code)
    pruned, plan = prune_model(model, tokenizer, recipe, context=context)
    before, after = prunable_params(model.config), prunable_params(pruned.config)
    summary = {
        "prunable_params_before": before,
        "prunable_params_after": after,
        "sparsity_target": recipe.sparsity,
        "sparsity_achieved": 1 - after / before,
        "layers": [vars(s) for s in layer_shapes(pruned.config)],
        "seconds": round(time.perf_counter() - started, 2),
        "diagnostics": plan.diagnostics,
    }
    save_checkpoint(pruned, tokenizer, out, overwrite, extra_files={
        RECIPE_FILE: recipe.to_json(), SUMMARY_FILE: json.dumps(summary, indent=2) + "\n",
        PLOT_FILE: render_plot(summary)})
    return PruneResult(Path(out), before, after)
