"""FLAP (An et al., AAAI 2024): fluctuation metric Var(X_j) * ||W[:, j]||^2 on pooled
calibration data, scores standardized per layer and structure (FFN / attention), one global
ranking decides how much each layer keeps (adaptive structure), and the removed channels'
mean output is added back as a bias (baseline compensation). Options: FlapConfig."""

from __future__ import annotations

from edgecore.families import family_of, layer_shapes
from gprune.allocation import global_counts, standardize
from gprune.methods import PrunePlan
from gprune.methods.common import keep_sets, layer_diagnostics, pooled, top_by_counts
from gprune.methods.configs import FlapConfig
from gprune.metrics import ffn_scores, kv_scores


def plan(model, recipe, calib) -> PrunePlan:
    cfg: FlapConfig = recipe.method
    family, shapes = family_of(model.config), layer_shapes(model.config)
    ffn, kv = [], []
    for i, (layer, shape) in enumerate(zip(family.decoder_layers(model), shapes)):
        down_stats, o_stats = pooled(calib, i)
        ffn.append(ffn_scores(family, layer, down_stats, "flap"))
        kv.append(kv_scores(family, layer, shape, o_stats, "flap"))
    counts = global_counts([standardize(s, cfg.robust) for s in ffn], [standardize(s, cfg.robust) for s in kv],
                           shapes, model.config.hidden_size, family.qkv_bias, recipe.sparsity, recipe.align)
    ffn_keep, kv_keep = top_by_counts(ffn, kv, counts)
    keep = keep_sets(model, ffn_keep, kv_keep, calib, cfg.bias_comp)
    return PrunePlan(keep, {"layers": layer_diagnostics(model, ffn_keep, kv_keep), "calibration": calib.timing})
