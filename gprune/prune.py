"""`prune`: the library call behind `gprune-edge prune`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .budget import check_sparsity, prunable_params
from .checkpoint import save_pruned
from .diagnostics import PLOT_FILE, render_plot
from .families import layer_shapes
from .loading import load_config, load_model
from .methods import get_method
from .output_dir import check_writable
from .recipe import PruneRecipe
from .surgery import check_alignment, resize

SUMMARY_FILE = "prune_summary.json"


@dataclass
class PruneResult:
    out: Path
    prunable_before: int
    prunable_after: int

    @property
    def sparsity(self) -> float:
        return 1 - self.prunable_after / self.prunable_before


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prune(recipe: PruneRecipe, out: str | Path, overwrite: bool = False) -> PruneResult:
    """Prune `recipe.model` as the recipe says and write the pruned checkpoint to `out`."""
    check_sparsity(recipe.sparsity)
    plan_fn = get_method(recipe.method)
    check_writable(out, overwrite)  # fail before the slow part
    check_alignment(layer_shapes(load_config(recipe.model, recipe.trust_remote_code)), recipe.align)
    started = time.perf_counter()
    model, tokenizer = load_model(recipe.model, trust_remote_code=recipe.trust_remote_code)
    plan = plan_fn(model, tokenizer, recipe)
    pruned = resize(model, plan.keep)  # methods move one layer at a time to recipe.device
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
    recipe_json = {**recipe.to_dict(), "gprune_edge_version": __version__}
    save_pruned(pruned, tokenizer, out, recipe_json, overwrite,
                extra_files={SUMMARY_FILE: json.dumps(summary, indent=2) + "\n", PLOT_FILE: render_plot(summary)})
    return PruneResult(Path(out), before, after)
