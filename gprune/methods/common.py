"""Plumbing shared by the calibrated methods: pooled statistics, keep-sets from per-layer
counts, FLAP bias compensation, diagnostics."""

from __future__ import annotations

import torch

from edgecore.model_layers import ModelLayers
from gprune.allocation import top_k
from gprune.calibration import Calibration
from gprune.metrics import compensation_bias, removed_of
from gprune.stats import merge_all
from gprune.surgery import LayerKeep


def pooled(calib: Calibration, i: int):
    """Layer i's statistics over all datasets together (down_proj inputs, o_proj inputs)."""
    row = calib.layers[i]
    return merge_all([c.down for c in row]), merge_all([c.o for c in row])


def keep_sets(layers: ModelLayers, ffn_keep: list[torch.Tensor], kv_keep: list[torch.Tensor],
              calib: Calibration | None, bias_comp: bool) -> list[LayerKeep]:
    """LayerKeeps; with bias_comp, removed channels' mean output goes into down_proj/o_proj biases."""
    family = layers.family
    out = []
    for i, (shape, f, g) in enumerate(zip(layers.shapes, ffn_keep, kv_keep)):
        keep = LayerKeep(f, g)
        if bias_comp and calib is not None:
            down_stats, o_stats = pooled(calib, i)
            keep.down_bias = compensation_bias(layers.weight(i, "down_proj"), down_stats.mean, removed_of(f, shape.ffn))
            removed_groups = removed_of(g, shape.kv_heads)
            o_removed = family.query_rows(shape, removed_groups) if len(removed_groups) else removed_groups
            keep.o_bias = compensation_bias(layers.weight(i, "o_proj"), o_stats.mean, o_removed)
        out.append(keep)
    return out


def top_by_counts(ffn_scores, kv_scores, counts) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return ([top_k(s, n) for s, (n, _) in zip(ffn_scores, counts)],
            [top_k(s, k) for s, (_, k) in zip(kv_scores, counts)])


def layer_diagnostics(layers: ModelLayers, ffn_keep, kv_keep) -> list[dict]:
    shapes = layers.shapes
    return [{"layer": i, "ffn_kept": len(f), "ffn_sparsity": round(1 - len(f) / s.ffn, 4), "kv_kept": len(g),
             "kv_sparsity": round(1 - len(g) / s.kv_heads, 4)} for i, (s, f, g) in enumerate(zip(shapes, ffn_keep, kv_keep))]
