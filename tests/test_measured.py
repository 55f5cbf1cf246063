"""GPrune's global greedy worked out one sublayer at a time (removal paths, merged) removes exactly what one
heap over every queue of every sublayer removes."""

import heapq

import pytest
import torch

from gprune.measured import Queue, Sublayer, merge_paths, removal_path, replay


def sublayers(seed: int, n: int = 4) -> list[Sublayer]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(n):
        units = 6 + 2 * s
        out.append(Sublayer(torch.randn(5, units, generator=g), torch.randn(units, 9, generator=g),
                            torch.rand(9, generator=g) + 0.5, [(0, 4), (4, 9)],
                            [torch.tensor([u]) for u in range(units)], 10 + s, 1, 0.5))
    return out


def queues_of(sub: Sublayer, seed: int) -> list[Queue]:
    order = torch.randperm(sub.n_units, generator=torch.Generator().manual_seed(seed)).tolist()
    return [Queue(0, order[::2]), Queue(0, order[1::2])]


def one_heap(subs: list[Sublayer], queues: list[list[Queue]], target: float, chunk: int) -> list[list[int]]:
    """The global lazy greedy as one heap over every queue (how gprune-edge 0.5 ran it, whole model in memory)."""
    flat = [(s, q) for s, qs in enumerate(queues) for q in qs]
    heap, pending, removed = [], {}, 0.0

    def push(qi):
        s, q = flat[qi]
        sub = subs[s]
        room = sub.n_units - len(sub.removed) - sub.min_keep
        units = q.units[q.pos:q.pos + max(0, min(chunk, room))]
        if units:
            objective = sub.trial(units)
            pending[qi] = (units, objective)
            heapq.heappush(heap, ((objective - sub.objective) / (len(units) * sub.unit_params), qi, sub.version))

    for qi in range(len(flat)):
        push(qi)
    while heap and removed < target:
        _, qi, version = heapq.heappop(heap)
        s, q = flat[qi]
        if version == subs[s].version:
            units, objective = pending.pop(qi)
            subs[s].apply(units, objective)
            q.pos += len(units)
            removed += len(units) * subs[s].unit_params
        push(qi)
    return [sub.removed for sub in subs]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("share", [0.2, 0.4, 0.6])
def test_merged_removal_paths_remove_what_one_heap_removes(seed, share):
    total = sum(sub.n_units * sub.unit_params for sub in sublayers(seed))
    reference = one_heap(sublayers(seed), [queues_of(s, seed + i) for i, s in enumerate(sublayers(seed))],
                         share * total, chunk=2)

    subs, paths, first = sublayers(seed), [], 0
    for i, sub in enumerate(subs):
        paths.append(removal_path(sub, queues_of(sub, seed + i), first, chunk=2))
        first += 2
    taken = merge_paths(paths, share * total)
    replayed, first = [], 0
    for i, (path, n) in enumerate(zip(paths, taken)):
        fresh = sublayers(seed)[i]
        replay(fresh, queues_of(fresh, seed + i), first, path[:n])
        replayed.append(fresh.removed)
        first += 2
    assert replayed == reference
    assert any(reference) and not all(len(r) == s.n_units - 1 for r, s in zip(reference, subs))


def test_a_trial_measures_the_output_change_it_would_make():
    """The chunk's cost from products of its own width equals the objective of the output change computed
    whole, after removals and after a restore."""
    sub = sublayers(0)[3]

    def direct(removed):
        delta = sub.weight[:, removed] @ sub.x[removed]
        return sub.combine(delta.pow(2).sum(0))

    assert sub.trial([0, 3]) == pytest.approx(direct([0, 3]), rel=1e-5)
    sub.apply([0, 3], sub.trial([0, 3]))
    assert sub.trial([5]) == pytest.approx(direct([0, 3, 5]), rel=1e-5)
    sub.apply([5], sub.trial([5]))
    sub.restore(1)
    assert sub.objective == pytest.approx(direct([0, 3]), rel=1e-5) and sub.removed == [0, 3]
    assert sub.trial([1]) == pytest.approx(direct([0, 3, 1]), rel=1e-5)
