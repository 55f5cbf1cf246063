"""GPrune's per-layer unit analysis: within-layer ranks per dataset, distribution
sensitivity, behavior-consistent modules, the reliability switch and outlier
protection. Everything here works on one layer's units at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def percentile_rank(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each score within its vector scaled to [0, 1] (1 = most important); ties by index."""
    n = len(scores)
    order = torch.argsort(scores.double(), stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    return ranks / max(n - 1, 1)


@dataclass
class UnitView:
    """What GPrune knows about the units of one layer (one row per unit)."""
    ranks: torch.Tensor  # [D, n] within-layer percentile rank per dataset
    mean_rank: torch.Tensor  # [n]
    sensitivity: torch.Tensor  # [n] spread (std) of the rank across datasets
    frequency: torch.Tensor  # [n] share of tokens where the unit is active, mean over datasets
    activity: torch.Tensor  # [n] within-layer rank of mean |x| (how strongly the unit fires)


def unit_view(scores: torch.Tensor, frequency: torch.Tensor, mean_abs: torch.Tensor) -> UnitView:
    """scores [D, n] of the base metric per dataset."""
    ranks = torch.stack([percentile_rank(s) for s in scores])
    sens = ranks.std(0, correction=0) if len(ranks) > 1 else torch.zeros(ranks.shape[1], dtype=torch.float64)
    return UnitView(ranks, ranks.mean(0), sens, frequency.double(), percentile_rank(mean_abs))


def kmeans(features: torch.Tensor, k: int, iters: int = 15) -> torch.Tensor:
    """Tiny deterministic k-means: labels [n]. Centres start at quantiles of the first feature."""
    n = len(features)
    k = max(1, min(k, n))
    start = torch.argsort(features[:, 0], stable=True)[torch.linspace(0, n - 1, k).round().long()]
    centres = features[start].clone()
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        labels = torch.cdist(features, centres).argmin(1)
        for c in range(k):
            members = features[labels == c]
            if len(members):
                centres[c] = members.mean(0)
    _, labels = torch.unique(labels, return_inverse=True)  # drop empty clusters, renumber 0..m-1
    return labels


def modules_of(view: UnitView, n_modules: int, use_sensitivity: bool) -> torch.Tensor:
    """Behavior-consistent modules: k-means on (sensitivity, mean rank, activation frequency),
    each as a within-layer rank so no feature's scale dominates."""
    n = len(view.mean_rank)
    if n_modules <= 1:
        return torch.zeros(n, dtype=torch.long)
    cols = [view.mean_rank, percentile_rank(view.frequency)]
    if use_sensitivity:
        cols.insert(0, percentile_rank(view.sensitivity))
    return kmeans(torch.stack(cols, 1), n_modules)


def unreliable_modules(view: UnitView, labels: torch.Tensor, use_sensitivity: bool, sens_q: float = 0.6,
                       act_q: float = 0.4) -> list[int]:
    """Modules whose units are distribution-sensitive (mean sensitivity rank above sens_q) and
    weakly or rarely active (mean activity or frequency rank below act_q): their activation-based
    scores are noise from little evidence, so the activation-free metric ranks them instead."""
    sens_r, freq_r = percentile_rank(view.sensitivity), percentile_rank(view.frequency)
    out = []
    for m in range(int(labels.max()) + 1):
        idx = labels == m
        sensitive = (sens_r[idx].mean() > sens_q) if use_sensitivity else True
        weak = min(view.activity[idx].mean(), freq_r[idx].mean()) < act_q
        if sensitive and weak:
            out.append(m)
    return out


def outliers(rms: torch.Tensor, factor: float) -> torch.Tensor:
    """Units whose activation RMS on any dataset ([D, n]) exceeds `factor` x the layer's median
    RMS on that dataset: massive-activation neurons, always kept (docs/DESIGN.md, pitfalls)."""
    med = rms.median(1, keepdim=True).values.clamp(min=1e-12)
    return ((rms / med) > factor).any(0)
