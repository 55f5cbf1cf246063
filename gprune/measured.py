"""Module-wise sparsity from measured cost under a global parameter budget.

Each sublayer (the FFN or the attention of one layer) holds removal queues, one
per module, with units in increasing order of their score. The cost of taking
a queue's next chunk is measured on the calibration token samples: the change
in the sublayer's output, relative to the residual stream's norm per token,
averaged per dataset and combined as mean + lam * worst dataset. A global greedy
pass removes the cheapest chunk per parameter until the budget is met; then
FFN widths are rounded to the alignment inside each layer."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from gprune.surgery import aligned_width


@dataclass
class Sublayer:
    weight: torch.Tensor  # [hidden, channels] output projection
    x: torch.Tensor  # [channels, T] sampled inputs (minus the compensated mean when bias compensation is on)
    inv_norm: torch.Tensor  # [T] 1 / ||residual||^2 per token
    segments: list[tuple[int, int]]  # token range of each dataset in T
    unit_channels: list[torch.Tensor]  # channels owned by each unit
    unit_params: int
    min_keep: int  # units that must stay (besides protected ones, which are in no queue)
    lam: float
    delta: torch.Tensor = None  # [hidden, T] output change of what is removed so far
    objective: float = 0.0
    removed: list[int] = field(default_factory=list)  # in removal order
    version: int = 0

    def __post_init__(self):
        self.delta = torch.zeros(self.weight.shape[0], self.x.shape[1], dtype=self.x.dtype)

    @property
    def n_units(self) -> int:
        return len(self.unit_channels)

    def per_dataset(self, delta: torch.Tensor) -> torch.Tensor:
        err = delta.pow(2).sum(0) * self.inv_norm
        return torch.stack([err[a:b].mean() for a, b in self.segments])

    def combine(self, per_dataset: torch.Tensor) -> float:
        return float(per_dataset.mean() + self.lam * per_dataset.max())

    def trial(self, units: list[int]) -> tuple[float, torch.Tensor]:
        cols = torch.cat([self.unit_channels[u] for u in units])
        delta = self.delta + self.weight[:, cols] @ self.x[cols]
        return self.combine(self.per_dataset(delta)), delta

    def apply(self, units: list[int], objective: float, delta: torch.Tensor) -> None:
        self.delta, self.objective = delta, objective
        self.removed += units
        self.version += 1

    def restore(self, n: int) -> None:
        """Put back the last n removed units (used when aligning widths upwards)."""
        back, self.removed = self.removed[len(self.removed) - n:], self.removed[:len(self.removed) - n]
        cols = torch.cat([self.unit_channels[u] for u in back])
        self.delta = self.delta - self.weight[:, cols] @ self.x[cols]
        self.objective = self.combine(self.per_dataset(self.delta))
        self.version += 1


@dataclass
class Queue:
    sublayer: int
    units: list[int]  # removal order
    pos: int = 0


def _next_chunk(q: Queue, sub: Sublayer, chunk: int) -> list[int]:
    room = sub.n_units - len(sub.removed) - sub.min_keep
    return q.units[q.pos:q.pos + max(0, min(chunk, room))]


def _candidate(qi: int, queues: list[Queue], subs: list[Sublayer], chunk: int):
    q = queues[qi]
    sub = subs[q.sublayer]
    units = _next_chunk(q, sub, chunk)
    if not units:
        return None
    objective, delta = sub.trial(units)
    per_param = (objective - sub.objective) / (len(units) * sub.unit_params)
    return per_param, sub.version, qi, units, objective, delta


@torch.no_grad()
def greedy(subs: list[Sublayer], queues: list[Queue], target_params: float, chunks: list[int]) -> float:
    """Remove the cheapest chunk per parameter, globally, until `target_params` are removed.
    `chunks[s]`: chunk size of sublayer s. Returns the parameters removed."""
    heap, extra, removed = [], {}, 0.0
    for qi in range(len(queues)):
        c = _candidate(qi, queues, subs, chunks[queues[qi].sublayer])
        if c is not None:
            extra[qi] = c[3:]
            heapq.heappush(heap, (c[0], qi, c[1]))
    bar = tqdm(total=round(target_params), desc="allocating", unit="param", unit_scale=True, leave=False)
    while heap and removed < target_params:
        _, qi, version = heapq.heappop(heap)
        q = queues[qi]
        sub = subs[q.sublayer]
        if version != sub.version:  # the sublayer changed since this cost was measured: re-measure
            c = _candidate(qi, queues, subs, chunks[q.sublayer])
            if c is not None:
                extra[qi] = c[3:]
                heapq.heappush(heap, (c[0], qi, c[1]))
            continue
        units, objective, delta = extra.pop(qi)
        sub.apply(units, objective, delta)
        q.pos += len(units)
        removed += len(units) * sub.unit_params
        bar.update(len(units) * sub.unit_params)
        c = _candidate(qi, queues, subs, chunks[q.sublayer])
        if c is not None:
            extra[qi] = c[3:]
            heapq.heappush(heap, (c[0], qi, c[1]))
    bar.close()
    return removed


@torch.no_grad()
def align_sublayer(sub: Sublayer, queues: list[Queue], align: int) -> None:
    """Round the kept width to a multiple of `align`: put back the most recently removed units, or
    remove more, cheapest queue first."""
    kept = sub.n_units - len(sub.removed)
    width = aligned_width(kept, align, sub.n_units)
    if width > kept:
        sub.restore(width - kept)
        gone = set(sub.removed)
        for q in queues:  # a queue's removed units are a prefix of it; its position follows the restore
            q.pos = sum(1 for u in q.units if u in gone)
        return
    need = kept - width
    while need > 0:
        best = None
        for q in queues:
            units = q.units[q.pos:q.pos + need]
            if units:
                objective, delta = sub.trial(units)
                if best is None or objective < best[0]:
                    best = (objective, delta, q, units)
        if best is None:
            return
        objective, delta, q, units = best
        sub.apply(units, objective, delta)
        q.pos += len(units)
        need -= len(units)
