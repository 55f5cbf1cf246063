"""Magnitude: the activation-free baseline. A unit's score is the L2 norm of all the weights
it owns. FFN neurons compete across layers (so widths differ per layer; allocation="uniform"
gives every layer the same share instead); KV groups are removed in the same number from
every layer. Options: MagnitudeConfig."""

from __future__ import annotations

from edgecore.model_layers import ModelLayers
from gprune.allocation import global_ffn_counts, keep_top, uniform_counts
from gprune.methods.configs import MagnitudeConfig
from gprune.methods.registry import PrunePlan, PruneTarget, register
from gprune.metrics import ffn_magnitude, kv_magnitude


@register(MagnitudeConfig)
def plan(layers: ModelLayers, cfg: MagnitudeConfig, target: PruneTarget, calib) -> PrunePlan:
    family, shapes = layers.family, layers.shapes
    ffn_scores, kv_scores = [], []
    for i, layer in layers.each():
        ffn_scores.append(ffn_magnitude(family, layer))
        kv_scores.append(kv_magnitude(family, layer, shapes[i]))
    hidden, qkv_bias = layers.config.hidden_size, family.qkv_bias
    if cfg.allocation == "uniform":
        counts = uniform_counts(shapes, hidden, qkv_bias, target.sparsity, target.align)
    else:
        counts = global_ffn_counts(ffn_scores, shapes, hidden, qkv_bias, target.sparsity, target.align)
    return PrunePlan(keep_top(ffn_scores, kv_scores, counts))
