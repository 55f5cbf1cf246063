"""How many units each layer keeps. Methods score units; allocation turns a
global sparsity into per-layer counts, and `top_k` picks the units."""

from __future__ import annotations

import torch

from edgecore.families import LayerShape
from edgecore.params import kv_group_params, layer_params, neuron_params
from gprune.surgery import LayerKeep, aligned_width


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


def max_sparsity(shapes: list[LayerShape], hidden: int, qkv_bias: bool, align: int) -> float:
    """Highest reachable sparsity: every layer keeps one KV group and one aligned block of FFN
    (a layer with no FFN breaks llama.cpp's `deci`, one with no KV group has no attention)."""
    total = sum(layer_params(s, hidden, qkv_bias) for s in shapes)
    floor = sum(min(align, s.ffn) * neuron_params(hidden) + kv_group_params(s, hidden, qkv_bias) for s in shapes)
    return 1 - floor / total


def check_reachable(shapes: list[LayerShape], hidden: int, qkv_bias: bool, sparsity: float, align: int) -> None:
    from edgecore.errors import GPruneError

    top = max_sparsity(shapes, hidden, qkv_bias, align)
    if sparsity > top:
        raise GPruneError(f"sparsity {sparsity} would empty layers: with --align {align} every layer keeps at least "
                          f"{align} FFN neurons and one KV group, so at most {top:.3f} is reachable")


def standardize(scores: torch.Tensor, robust: bool) -> torch.Tensor:
    """Per-layer standardisation. robust: (s - median) / MAD, so one extreme unit cannot squash
    the rest of its layer to z ~ 0 (docs/DESIGN.md, pitfalls); else FLAP's (s - mean) / std."""
    s = scores.double()
    if len(s) < 2:  # one unit (a layer with one KV group) has no spread: z = 0
        return s - s.mean()
    if robust:
        med = s.median()
        mad = (s - med).abs().median()
        return (s - med) / (mad if mad > 0 else s.std().clamp(min=1e-12))
    return (s - s.mean()) / s.std().clamp(min=1e-12)


def global_counts(ffn_z: list[torch.Tensor], kv_z: list[torch.Tensor], shapes: list[LayerShape], hidden: int,
                  qkv_bias: bool, sparsity: float, align: int) -> list[tuple[int, int]]:
    """FLAP-style adaptive structure: all units of all layers (FFN neurons and KV groups) in one
    list sorted by standardized score; the lowest go until the removed parameters reach the budget.
    A layer never drops below one KV group and `align` neurons; FFN widths are then aligned."""
    target = sparsity * sum(layer_params(s, hidden, qkv_bias) for s in shapes)
    scores, layer_of, is_kv = [], [], []
    for i, (f, g) in enumerate(zip(ffn_z, kv_z)):
        scores += [f.double(), g.double()]
        layer_of += [torch.full((len(f),), i), torch.full((len(g),), i)]
        is_kv += [torch.zeros(len(f), dtype=torch.bool), torch.ones(len(g), dtype=torch.bool)]
    scores, layer_of, is_kv = torch.cat(scores), torch.cat(layer_of), torch.cat(is_kv)
    ffn_keep = [s.ffn for s in shapes]
    kv_keep = [s.kv_heads for s in shapes]
    removed = 0.0
    for u in torch.argsort(scores, stable=True).tolist():
        if removed >= target:
            break
        i = int(layer_of[u])
        if is_kv[u]:
            if kv_keep[i] > 1:
                kv_keep[i] -= 1
                removed += kv_group_params(shapes[i], hidden, qkv_bias)
        elif ffn_keep[i] > align:
            ffn_keep[i] -= 1
            removed += neuron_params(hidden)
    return [(aligned_width(f, align, s.ffn), k) for f, k, s in zip(ffn_keep, kv_keep, shapes)]
