"""Per-layer widths searched at the model's output (GPrune's `search` option).

GPrune's greedy prices each sublayer's cut alone, so it cannot see errors that compound
through later layers (BENCHMARKS.md, issue 14). This search starts from the greedy's widths
and moves parameters between sublayers. Each generation makes OFFSPRING candidates from the
current widths by a few random moves: FFN neurons (one alignment step) from one layer to
another, a KV group cut or given back; then the budget is repaired with FFN steps of random
layers. The candidates are ranked by a cheap price (the KL at the model's output on a few
calibration tokens); the best FINALISTS are priced on more tokens in that order, and the
first that costs less than the current widths replaces them. Moves get smaller as the
search goes on. An evolutionary search with multi-stage selection, after EvoPress
(Sieberling et al., 2024); it knows nothing of models: the caller prices widths."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tqdm.auto import tqdm

OFFSPRING = 16  # candidates per generation
FINALISTS = 3  # cheapest candidates priced on the larger token set
MAX_MOVES = 6  # moves per candidate at the start (falls to 1 by the last generation)


@dataclass(frozen=True)
class Widths:
    ffn: tuple[int, ...]  # kept FFN neurons per layer
    kv: tuple[int, ...]  # kept KV groups per layer


@dataclass(frozen=True)
class Space:
    """What widths are allowed and what they cost in parameters."""
    ffn_min: tuple[int, ...]
    ffn_max: tuple[int, ...]
    kv_max: tuple[int, ...]  # at least one KV group always stays
    step: int  # FFN neurons per move (the alignment)
    neuron_params: int
    kv_params: tuple[int, ...]  # parameters of one KV group, per layer
    target: float  # parameters to remove

    def removed(self, w: Widths) -> float:
        return sum((top - f) * self.neuron_params + (kv_top - k) * p
                   for top, f, kv_top, k, p in zip(self.ffn_max, w.ffn, self.kv_max, w.kv, self.kv_params))

    def can_cut(self, ffn: list[int], i: int) -> bool:
        return ffn[i] - self.step >= self.ffn_min[i]

    def can_restore(self, ffn: list[int], i: int) -> bool:
        return ffn[i] + self.step <= self.ffn_max[i]


def _mutate(w: Widths, space: Space, moves: int, rng: random.Random) -> Widths:
    ffn, kv = list(w.ffn), list(w.kv)
    n = len(ffn)
    for _ in range(moves):
        i, j, r = rng.randrange(n), rng.randrange(n), rng.random()
        # 15% of moves cut a KV group, 15% give one back: a group weighs many FFN neurons (171 in SmolLM2), so a
        # candidate moving one is a large step that the repair pays for with FFN steps
        if r < 0.15 and kv[i] > 1:
            kv[i] -= 1
        elif r < 0.3 and kv[i] < space.kv_max[i]:
            kv[i] += 1
        elif i != j and space.can_cut(ffn, i) and space.can_restore(ffn, j):
            ffn[i] -= space.step
            ffn[j] += space.step
    return _repair(Widths(tuple(ffn), tuple(kv)), space, rng)


def _repair(w: Widths, space: Space, rng: random.Random) -> Widths:
    """The budget met to within one FFN step: cut steps of random layers while too little is
    removed, give steps back while one can go back without falling short."""
    ffn, n = list(w.ffn), len(w.ffn)
    removed = space.removed(w)
    step_params = space.step * space.neuron_params
    while removed < space.target:
        room = [i for i in range(n) if space.can_cut(ffn, i)]
        if not room:
            break
        ffn[rng.choice(room)] -= space.step
        removed += step_params
    while removed - step_params >= space.target:
        room = [i for i in range(n) if space.can_restore(ffn, i)]
        if not room:
            break
        ffn[rng.choice(room)] += space.step
        removed -= step_params
    return Widths(tuple(ffn), w.kv)


def search_widths(start: Widths, space: Space, cheap_price: Callable[[Widths], float],
                  price: Callable[[Widths], float], generations: int, seed: int) -> tuple[Widths, dict]:
    """(widths, log): the lowest-`price` widths found, starting from `start`. The log holds the
    price before and after, the price after each generation, and how many candidates were taken."""
    rng = random.Random(seed)
    current = _repair(start, space, rng)
    log = {"price_start": price(start), "trace": [], "accepted": 0}
    best = price(current) if current != start else log["price_start"]
    bar = tqdm(range(generations), desc="width search", unit="gen", leave=False)
    for g in bar:
        moves = max(1, round(MAX_MOVES * (1 - g / generations)))
        offspring = [_mutate(current, space, rng.randint(1, moves), rng) for _ in range(OFFSPRING)]
        ranked = sorted(offspring, key=cheap_price)
        for candidate in ranked[:FINALISTS]:
            p = price(candidate)
            if p < best:
                best, current = p, candidate
                log["accepted"] += 1
                break
        log["trace"].append(round(best, 5))
        bar.set_postfix(price=f"{best:.4f}")
    log["price_end"] = best
    return current, log
