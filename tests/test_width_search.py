"""The width search on its own, with prices whose best widths are known."""

import random

import pytest

from gprune.width_search import Space, Widths, _mutate, search_widths

SPACE = Space(ffn_min=(8,) * 4, ffn_max=(64,) * 4, kv_max=(2,) * 4, step=8, neuron_params=10, kv_params=(100,) * 4,
              target=960.0)  # 96 neurons' worth of parameters to remove from 4 layers


def quadratic(want: tuple[int, ...]):
    """Price: squared distance of the FFN widths from `want`, a KV group cut costs 1000."""
    return lambda w: float(sum((f - t) ** 2 for f, t in zip(w.ffn, want)) + 1000 * sum(2 - k for k in w.kv))


def test_moves_keep_the_budget_and_the_bounds():
    rng, w = random.Random(0), Widths((40, 40, 40, 40), (2, 2, 2, 2))
    for _ in range(200):
        w = _mutate(w, SPACE, rng.randint(1, 6), rng)
        assert SPACE.target <= SPACE.removed(w) < SPACE.target + SPACE.step * SPACE.neuron_params
        assert all(8 <= f <= 64 and f % 8 == 0 for f in w.ffn) and all(1 <= k <= 2 for k in w.kv)


def test_the_search_finds_the_cheapest_widths_and_never_gets_worse():
    price = quadratic((64, 64, 24, 8))  # removes exactly 96 neurons: the best widths meet the budget
    start = Widths((40, 40, 40, 40), (2, 2, 2, 2))
    widths, log = search_widths(start, SPACE, price, price, generations=60, seed=1)
    assert widths == Widths((64, 64, 24, 8), (2, 2, 2, 2))
    assert log["price_end"] == 0 < log["price_start"] and log["accepted"] > 0
    assert all(a >= b for a, b in zip(log["trace"], log["trace"][1:]))


def test_the_cheap_price_only_orders_candidates():
    price = quadratic((64, 64, 24, 8))
    start = Widths((40, 40, 40, 40), (2, 2, 2, 2))
    # a cheap price that ranks every candidate the same: the full price still decides what is taken
    widths, log = search_widths(start, SPACE, lambda w: 0.0, price, generations=60, seed=1)
    assert log["price_end"] <= log["price_start"] and price(widths) == log["price_end"]


@pytest.mark.parametrize("seed", [0, 7])
def test_the_same_seed_gives_the_same_widths(seed):
    price = quadratic((64, 48, 24, 24))
    start = Widths((40, 40, 40, 40), (2, 2, 2, 2))
    assert search_widths(start, SPACE, price, price, 10, seed) == search_widths(start, SPACE, price, price, 10, seed)
