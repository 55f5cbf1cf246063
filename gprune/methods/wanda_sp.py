"""wanda-sp: structured Wanda. A unit's score sums |W| x ||X|| over its output-projection
weights (down_proj column, o_proj columns of its heads), on all calibration data pooled.
Every layer loses the same share of parameters (uniform allocation). Options: WandaSpConfig."""

from __future__ import annotations

from edgecore.model_layers import ModelLayers
from gprune.allocation import uniform_counts
from gprune.methods.common import keep_sets, layer_diagnostics, pooled, top_by_counts
from gprune.methods.configs import WandaSpConfig
from gprune.methods.registry import PrunePlan, PruneTarget, register
from gprune.metrics import ffn_scores, kv_scores


@register(WandaSpConfig)
def plan(layers: ModelLayers, cfg: WandaSpConfig, target: PruneTarget, calib) -> PrunePlan:
    family, shapes = layers.family, layers.shapes
    ffn, kv = [], []
    for i, layer in layers.each():
        down_stats, o_stats = pooled(calib, i)
        ffn.append(ffn_scores(family, layer, down_stats, "wanda-sp"))
        kv.append(kv_scores(family, layer, shapes[i], o_stats, "wanda-sp"))
    counts = uniform_counts(shapes, layers.config.hidden_size, family.qkv_bias, target.sparsity, target.align)
    ffn_keep, kv_keep = top_by_counts(ffn, kv, counts)
    keep = keep_sets(layers, ffn_keep, kv_keep, calib, cfg.bias_comp)
    return PrunePlan(keep, {"layers": layer_diagnostics(layers, ffn_keep, kv_keep), "calibration": calib.timing})
