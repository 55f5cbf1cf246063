"""FLAP (An et al., AAAI 2024): fluctuation metric Var(X_j) * ||W[:, j]||^2 on pooled
calibration data, scores standardized per layer and structure (FFN / attention), one global
ranking decides how much each layer keeps (adaptive structure), and the removed channels'
mean output is added back as a bias (baseline compensation). Options: FlapConfig.

How attention competes with the FFN follows FLAP's published code (CASIA-LMC-Lab/FLAP,
lib/prune.py, structure AL-AM): the o_proj channel metric is squared, standardized over the
layer's channels, and a head's (here: a KV group's) score is the mean of its channels' z.
A mean of many z-scores stays near 0, so attention is pruned only when a whole group is
weak. Standardizing the groups' summed scores instead (attention="group-sum", gprune-edge
0.1) gives a layer's weakest of 3 groups z = -1.15 however strong it is, so at low sparsity
one or two groups went from every layer before the FFN gave up its weakest neurons."""

from __future__ import annotations

from edgecore.model_layers import ModelLayers
from gprune.allocation import global_counts, standardize
from gprune.methods.common import keep_sets, layer_diagnostics, pooled, top_by_counts
from gprune.methods.configs import FlapConfig
from gprune.methods.registry import PrunePlan, PruneTarget, register
from gprune.metrics import channel_scores, ffn_scores, group_channels, kv_scores


def kv_z(family, layer, shape, o_stats, cfg: FlapConfig):
    """Standardized KV-group scores of one layer, comparable with its FFN neurons' z."""
    if cfg.attention == "group-sum":
        return standardize(kv_scores(family, layer, shape, o_stats, "flap"), cfg.robust)
    channel = channel_scores(family.o_proj(layer).weight, o_stats, "flap") ** 2
    return group_channels(family, shape, standardize(channel, cfg.robust), reduce="mean")


@register(FlapConfig)
def plan(layers: ModelLayers, cfg: FlapConfig, target: PruneTarget, calib) -> PrunePlan:
    family, shapes = layers.family, layers.shapes
    ffn, kv = [], []
    for i, layer in layers.each():
        down_stats, o_stats = pooled(calib, i)
        ffn.append(standardize(ffn_scores(family, layer, down_stats, "flap"), cfg.robust))
        kv.append(kv_z(family, layer, shapes[i], o_stats, cfg))
    counts = global_counts(ffn, kv, shapes, layers.config.hidden_size, family.qkv_bias, target.sparsity, target.align)
    ffn_keep, kv_keep = top_by_counts(ffn, kv, counts)
    keep = keep_sets(layers, ffn_keep, kv_keep, calib, cfg.bias_comp)
    return PrunePlan(keep, {"layers": layer_diagnostics(layers, ffn_keep, kv_keep), "calibration": calib.timing})
