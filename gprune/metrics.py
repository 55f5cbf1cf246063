"""Base importance metrics per unit (FFN neuron, KV group) of one layer.

Channel scores are computed on the input channels of down_proj (one channel =
one neuron) and o_proj (head_dim channels per query head); a KV group's score
is the sum over the o_proj channels of the query heads it owns.
- magnitude: L2 norm of all weights the unit owns (activation-free)
- wanda-sp:  sum over the unit's output-projection weights of |W_ij| * ||X_j||
- flap:      fluctuation Var(X_j) * ||W[:, j]||^2 (FLAP, An et al. 2024)"""

from __future__ import annotations

import torch

from edgecore.errors import GPruneError
from edgecore.families import LayerShape
from gprune.stats import ChannelStats

METRICS = ("wanda-sp", "flap")


def channel_scores(weight: torch.Tensor, stats: ChannelStats, metric: str) -> torch.Tensor:
    """Per input channel of an output projection `weight` [out, in]."""
    w = weight.detach().double().cpu()
    if metric == "wanda-sp":
        return (w.abs() * stats.l2[None, :]).sum(0)
    if metric == "flap":
        return stats.variance * w.pow(2).sum(0)
    raise GPruneError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


def group_channels(family, shape: LayerShape, channel: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """One score per KV group from its o_proj channels' scores: their sum, or their mean."""
    per_group = [channel[family.query_rows(shape, torch.tensor([g]))] for g in range(shape.kv_heads)]
    return torch.stack([c.mean() if reduce == "mean" else c.sum() for c in per_group])


def ffn_scores(family, layer, stats: ChannelStats, metric: str) -> torch.Tensor:
    return channel_scores(family.down_proj(layer).weight, stats, metric)


def kv_scores(family, layer, shape: LayerShape, stats: ChannelStats, metric: str) -> torch.Tensor:
    return group_channels(family, shape, channel_scores(family.o_proj(layer).weight, stats, metric))


@torch.no_grad()
def ffn_magnitude(family, layer) -> torch.Tensor:
    gate, up, down = family.ffn(layer)
    return (gate.weight.pow(2).sum(1) + up.weight.pow(2).sum(1) + down.weight.pow(2).sum(0)).sqrt().double().cpu()


@torch.no_grad()
def kv_magnitude(family, layer, shape: LayerShape) -> torch.Tensor:
    q, k, v, o = family.attention(layer)
    per_group = lambda w: w.reshape(shape.kv_heads, -1).pow(2).sum(1)  # noqa: E731  rows are grouped in order
    o_cols = o.weight.t().reshape(shape.kv_heads, -1).pow(2).sum(1)
    return (per_group(q.weight) + per_group(k.weight) + per_group(v.weight) + o_cols).sqrt().double().cpu()


@torch.no_grad()
def compensation_bias(weight: torch.Tensor, mean: torch.Tensor, removed: torch.Tensor) -> torch.Tensor | None:
    """FLAP's baseline bias: the removed channels' mean contribution, W[:, removed] @ mean[removed]."""
    if len(removed) == 0:
        return None
    w = weight.detach().double().cpu()
    return (w[:, removed] @ mean[removed].double()).float()


def removed_of(kept: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[kept] = False
    return mask.nonzero().flatten()
