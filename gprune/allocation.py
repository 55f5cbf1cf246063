"""How many units each layer keeps. Methods score units; allocation turns a
global sparsity into per-layer counts, and `top_k` picks the units."""

from __future__ import annotations

import torch

from .budget import kv_group_params, layer_params, neuron_params
from .families import LayerShape
from .surgery import LayerKeep, aligned_width


def uniform_counts(shapes: list[LayerShape], hidden: int, qkv_bias: bool, sparsity: float,
                   align: int) -> list[tuple[int, int]]:
    """(FFN neurons, KV groups) to keep per layer so that every layer loses `sparsity` of its
    parameters: KV groups go in whole steps (rounded), the FFN makes up the rest (aligned)."""
    counts = []
    for s in shapes:
        kv_keep = max(1, round((1 - sparsity) * s.kv_heads))
        attn_removed = (s.kv_heads - kv_keep) * kv_group_params(s, hidden, qkv_bias)
        ffn_removed = max(0.0, sparsity * layer_params(s, hidden, qkv_bias) - attn_removed) / neuron_params(hidden)
        counts.append((aligned_width(s.ffn - ffn_removed, align, s.ffn), kv_keep))
    return counts


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, ties broken by index so results are deterministic."""
    order = torch.argsort(scores.double(), descending=True, stable=True)
    return order[:k].sort().values


def keep_top(ffn_scores: list[torch.Tensor], kv_scores: list[torch.Tensor],
             counts: list[tuple[int, int]]) -> list[LayerKeep]:
    return [LayerKeep(top_k(f, n_ffn), top_k(g, n_kv)) for f, g, (n_ffn, n_kv) in zip(ffn_scores, kv_scores, counts)]


def global_ffn_counts(ffn_scores: list[torch.Tensor], shapes: list[LayerShape], hidden: int, qkv_bias: bool,
                      sparsity: float, align: int) -> list[tuple[int, int]]:
    """Like `uniform_counts` for KV groups, but the FFN neurons to remove compete across all
    layers by score, so layers end up with different widths."""
    kv_keep = [kv for _, kv in uniform_counts(shapes, hidden, qkv_bias, sparsity, align)]
    total = sum(layer_params(s, hidden, qkv_bias) for s in shapes)
    attn_removed = sum((s.kv_heads - k) * kv_group_params(s, hidden, qkv_bias) for s, k in zip(shapes, kv_keep))
    n_remove = max(0, round((sparsity * total - attn_removed) / neuron_params(hidden)))
    scores = torch.cat([f.double() for f in ffn_scores])
    layer_of = torch.cat([torch.full((len(f),), i) for i, f in enumerate(ffn_scores)])
    removed = layer_of[torch.argsort(scores, stable=True)[:n_remove]]
    removed_per_layer = torch.bincount(removed, minlength=len(shapes)).tolist()
    return [(aligned_width(s.ffn - r, align, s.ffn), k) for s, r, k in zip(shapes, removed_per_layer, kv_keep)]
