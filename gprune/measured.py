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
    delta_sqnorm: torch.Tensor = None  # [T] its squared norm per token
    objective: float = 0.0
    removed: list[int] = field(default_factory=list)  # in removal order
    version: int = 0

    def __post_init__(self):
        self.delta = torch.zeros(self.weight.shape[0], self.x.shape[1], dtype=self.x.dtype)
        self.delta_sqnorm = torch.zeros(self.x.shape[1], dtype=self.x.dtype)

    @property
    def n_units(self) -> int:
        return len(self.unit_channels)

    def combine(self, sqnorm: torch.Tensor) -> float:
        """The objective of an output change with squared norm `sqnorm` per token."""
        per_dataset = torch.stack([(sqnorm * self.inv_norm)[a:b].mean() for a, b in self.segments])
        return float(per_dataset.mean() + self.lam * per_dataset.max())

    def trial(self, units: list[int]) -> float:
        """The objective after also removing `units`. Their output change is W_c x_c; per token,
        |delta + W_c x_c|^2 = |delta|^2 + 2 x_c.(W_c' delta) + x_c' (W_c' W_c) x_c: products of the chunk's
        width, never a new [hidden, T] tensor (the greedy measures thousands of chunks per layer)."""
        cols = self._columns(units)
        w, x = self.weight[:, cols], self.x[cols]
        change = (2 * (w.T @ self.delta) + (w.T @ w) @ x).mul_(x).sum(0)
        return self.combine(self.delta_sqnorm + change)

    def apply(self, units: list[int], objective: float) -> None:
        self._move(units, 1.0)
        self.objective = objective
        self.removed += units

    def restore(self, n: int) -> None:
        """Put back the last n removed units (used when aligning widths upwards)."""
        back, self.removed = self.removed[len(self.removed) - n:], self.removed[:len(self.removed) - n]
        self._move(back, -1.0)
        self.objective = self.combine(self.delta_sqnorm)

    def _columns(self, units: list[int]) -> torch.Tensor:
        return torch.cat([self.unit_channels[u] for u in units])

    def _move(self, units: list[int], sign: float) -> None:
        """Add (sign 1) or take back (-1) the output change of removing `units`."""
        cols = self._columns(units)
        self.delta.addmm_(self.weight[:, cols], self.x[cols], alpha=sign)
        self.delta_sqnorm = self.delta.pow(2).sum(0)
        self.version += 1


@dataclass
class Queue:
    sublayer: int
    units: list[int]  # removal order
    pos: int = 0


def _next_chunk(q: Queue, sub: Sublayer, chunk: int) -> list[int]:
    room = sub.n_units - len(sub.removed) - sub.min_keep
    return q.units[q.pos:q.pos + max(0, min(chunk, room))]


@dataclass
class Pop:
    """One step of a sublayer's removal path: the heap entry taken, as the global greedy orders it
    (cost per parameter, then the queue's global index), and the units it removed (none when the
    entry was stale and its cost was measured again)."""
    key: tuple[float, int]
    units: list[int]
    params: int


@torch.no_grad()
def removal_path(sub: Sublayer, queues: list[Queue], first: int, chunk: int) -> list[Pop]:
    """Every step the global lazy greedy takes on this sublayer, to the end of its queues.

    The global greedy keeps one heap entry per queue (its next chunk's cost per parameter, measured
    when the sublayer last changed) and repeatedly pops the cheapest: a stale entry is measured again
    and pushed back, a current one is removed. Which of a sublayer's entries comes first depends only
    on that sublayer's entries, so its sequence of pops can be worked out one layer at a time (with
    only that layer in memory), and the global order is the merge of the sequences (`merge_paths`).
    `first`: the global index of `queues[0]`; queue positions are left where the path ends."""
    heap, pending, path = [], {}, []

    def push(j: int) -> None:
        units = _next_chunk(queues[j], sub, chunk)
        if units:
            objective = sub.trial(units)
            pending[j] = (units, objective, sub.version)
            heapq.heappush(heap, ((objective - sub.objective) / (len(units) * sub.unit_params), first + j))

    for j in range(len(queues)):
        push(j)
    while heap:
        cost, qi = heapq.heappop(heap)
        j = qi - first
        units, objective, version = pending.pop(j)
        if version != sub.version:  # the sublayer changed since this cost was measured: measure again
            path.append(Pop((cost, qi), [], 0))
        else:
            sub.apply(units, objective)
            queues[j].pos += len(units)
            path.append(Pop((cost, qi), units, len(units) * sub.unit_params))
        push(j)
    return path


def merge_paths(paths: list[list[Pop]], target_params: float) -> list[int]:
    """How many steps of each sublayer's path the global greedy takes before `target_params` are
    removed: the paths merged by their heap keys, as one heap over all queues would pop them."""
    taken = [0] * len(paths)
    heads = [(path[0].key, s) for s, path in enumerate(paths) if path]
    heapq.heapify(heads)
    removed = 0.0
    while heads and removed < target_params:
        _, s = heapq.heappop(heads)
        removed += paths[s][taken[s]].params
        taken[s] += 1
        if taken[s] < len(paths[s]):
            heapq.heappush(heads, (paths[s][taken[s]].key, s))
    return taken


@torch.no_grad()
def replay(sub: Sublayer, queues: list[Queue], first: int, path: list[Pop]) -> None:
    """Remove what `path` removed, in its order (the same arithmetic, so the same state)."""
    for pop in path:
        if pop.units:
            sub.apply(pop.units, sub.trial(pop.units))
            queues[pop.key[1] - first].pos += len(pop.units)


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
                objective = sub.trial(units)
                if best is None or objective < best[0]:
                    best = (objective, q, units)
        if best is None:
            return
        objective, q, units = best
        sub.apply(units, objective)
        q.pos += len(units)
        need -= len(units)
