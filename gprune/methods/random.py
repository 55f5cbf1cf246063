"""random: units drawn at random (seeded by the recipe), uniform allocation per layer. The
floor any method must beat. No options."""

from __future__ import annotations

import torch

from edgecore.model_layers import ModelLayers
from gprune.allocation import uniform_counts
from gprune.methods.common import keep_sets, layer_diagnostics, top_by_counts
from gprune.methods.configs import RandomConfig
from gprune.methods.registry import PrunePlan, PruneTarget, register


@register(RandomConfig)
def plan(layers: ModelLayers, cfg: RandomConfig, target: PruneTarget, calib) -> PrunePlan:
    family, shapes = layers.family, layers.shapes
    g = torch.Generator().manual_seed(target.seed)
    ffn = [torch.rand(s.ffn, generator=g) for s in shapes]
    kv = [torch.rand(s.kv_heads, generator=g) for s in shapes]
    counts = uniform_counts(shapes, layers.config.hidden_size, family.qkv_bias, target.sparsity, target.align)
    ffn_keep, kv_keep = top_by_counts(ffn, kv, counts)
    return PrunePlan(keep_sets(layers, ffn_keep, kv_keep, None, False),
                     {"layers": layer_diagnostics(layers, ffn_keep, kv_keep)})
