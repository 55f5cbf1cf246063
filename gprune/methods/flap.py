"""FLAP (An et al., AAAI 2024): fluctuation metric Var(X_j) * ||W[:, j]||^2 on pooled
calibration data, scores standardized per layer and structure (FFN / attention), one global
ranking decides how much each layer keeps (adaptive structure), and the removed channels'
mean output is added back as a bias (baseline compensation, on unless options.bias_comp=false).
options.robust=true standardizes by median/MAD instead of mean/std."""

from __future__ import annotations

from ..allocation import global_counts, standardize
from ..families import family_of, layer_shapes
from ..metrics import ffn_scores, kv_scores
from . import PrunePlan
from .common import calibration, check_budget, keep_sets, layer_diagnostics, pooled, top_by_counts


def plan(model, tokenizer, recipe) -> PrunePlan:
    check_budget(model, recipe)
    family, shapes = family_of(model.config), layer_shapes(model.config)
    calib = calibration(model, tokenizer, recipe)
    robust = bool(recipe.options.get("robust", False))
    ffn, kv = [], []
    for i, (layer, shape) in enumerate(zip(family.decoder_layers(model), shapes)):
        down_stats, o_stats = pooled(calib, i)
        ffn.append(ffn_scores(family, layer, down_stats, "flap"))
        kv.append(kv_scores(family, layer, shape, o_stats, "flap"))
    counts = global_counts([standardize(s, robust) for s in ffn], [standardize(s, robust) for s in kv], shapes,
                           model.config.hidden_size, family.qkv_bias, recipe.sparsity, recipe.align)
    ffn_keep, kv_keep = top_by_counts(ffn, kv, counts)
    keep = keep_sets(model, ffn_keep, kv_keep, calib, bool(recipe.options.get("bias_comp", True)))
    return PrunePlan(keep, {"layers": layer_diagnostics(model, ffn_keep, kv_keep), "calibration": calib.timing})
