"""Dominance and the choice of what ships, on figures measured for SmolLM2-135M on raspberry-pi's
types (BENCHMARKS.md, "Budget builds"): the search never ships a candidate another one that meets
the budgets dominates; a forced sparsity ships what it forces and names what dominates it."""

from gprune_edge.candidates import Candidate, choose, conclusion, dominates, dominating


def measured(sparsity, dtype, mb, ppl, decode=None, memory=None, verdict="meets budgets"):
    speed = decode and {"median": decode[0], "low": decode[1], "high": decode[2], "pairs": 15}
    return Candidate(sparsity, "gguf", dtype, artifact=f"artifacts/{dtype}", size_bytes=int(mb * 1e6),
                     perplexity_ratio=ppl, max_perplexity_ratio=ppl, decode_speedup=speed, memory_mb=memory,
                     verdict=verdict)


REFERENCE = measured(0.0, "q8_0", 144.8, 1.0, (1.0, None, None))
DENSE_Q4 = measured(0.0, "q4_k_m", 105.5, 1.061, (1.00, 0.96, 1.01))
DENSE_Q3 = measured(0.0, "q3_k_m", 93.5, 1.132, (1.22, 1.19, 1.29))
PRUNED20_Q8 = measured(0.2, "q8_0", 122.4, 1.613, (1.06, 1.01, 1.09))
PRUNED35_Q3 = measured(0.35, "q3_k_m", 74.1, 2.736, (1.46, 1.34, 1.54))


def test_smaller_and_more_accurate_dominates_when_its_speed_interval_reaches_the_others():
    assert dominates(DENSE_Q4, PRUNED20_Q8)  # 105.5 < 122.4 MB, 1.061 < 1.613, [0.96, 1.01] meets [1.01, 1.09]
    assert not dominates(PRUNED20_Q8, DENSE_Q4) and not dominates(DENSE_Q4, DENSE_Q4)


def test_a_candidate_measurably_slower_does_not_dominate():
    slower = measured(0.0, "q4_k_m", 105.5, 1.061, (0.90, 0.85, 0.95))
    assert not dominates(slower, PRUNED20_Q8)  # its whole interval lies below 1.01
    assert not dominates(DENSE_Q3, PRUNED35_Q3)  # more accurate, but bigger and slower


def test_memory_counts_beyond_its_noise():
    light = measured(0.2, "q8_0", 122.4, 1.613, (1.06, 1.01, 1.09), memory=200)
    heavy = measured(0.0, "q4_k_m", 105.5, 1.061, (1.00, 0.96, 1.01), memory=230)
    assert not dominates(heavy, light)
    assert dominates(measured(0.0, "q4_k_m", 105.5, 1.061, (1.00, 0.96, 1.01), memory=203), light)  # within 2%


def test_the_search_ships_the_most_accurate_undominated_candidate_within_the_budgets():
    slow = measured(0.0, "q8_0", 144.8, 1.0, (1.0, None, None), verdict="misses: decode tok/s")
    best, search = choose([slow, DENSE_Q4, DENSE_Q3, PRUNED20_Q8, PRUNED35_Q3])
    assert best is search is DENSE_Q4
    assert choose([REFERENCE, DENSE_Q4]) == (REFERENCE, REFERENCE)  # the reference itself when it meets them


def test_a_forced_sparsity_ships_its_best_candidate_and_names_what_dominates_it():
    candidates = [REFERENCE, DENSE_Q4, DENSE_Q3, PRUNED20_Q8, measured(0.2, "q3_k_m", 83.9, 1.836, (1.27, 1.23, 1.30))]
    best, search = choose(candidates, forced=0.2)
    assert best is PRUNED20_Q8 and search is REFERENCE
    # the case: the dense q4_k_m (and q3_k_m) are smaller, as fast and more accurate than pruned 20% q8_0
    assert dominating(best, candidates) == [DENSE_Q4, DENSE_Q3]
    note = conclusion(best, search, candidates, 0.2, "perplexity ratio <= 3")
    assert note == ("--sparsity 0.2 forced pruned20-q8_0.gguf; of what it measured, the search would have shipped "
                    "dense-q8_0.gguf (1.000); pruned20-q8_0.gguf is dominated by dense-q4_k_m.gguf, "
                    "dense-q3_k_m.gguf (as small, as light, as fast within the interval, and smaller or more accurate)")


def test_the_conclusion_says_when_nothing_needs_pruning_and_when_pruning_wins():
    assert conclusion(REFERENCE, REFERENCE, [REFERENCE, DENSE_Q4], None, "memory <= 1024 MB") == (
        "nothing needs pruning: the dense model as q8_0 is the most accurate within memory <= 1024 MB, and no "
        "pruned model could be more accurate")
    over = measured(0.0, "q3_k_m", 93.5, 1.132, verdict="misses: max_model_memory_mb [llama.cpp]: 204 > 160")
    small = measured(0.35, "q3_k_m", 74.1, 2.736)
    assert conclusion(small, small, [over, small], None, "memory <= 160 MB") == (
        "pruned 35% as q3_k_m is the most accurate within memory <= 160 MB; no dense quantization meets them "
        "(dense-q3_k_m.gguf: max_model_memory_mb [llama.cpp]: 204 > 160)")


def test_nothing_within_the_budgets_ships_nothing():
    missed = measured(0.0, "q8_0", 144.8, 1.0, verdict="misses: memory")
    assert choose([missed]) == (None, None)
    assert choose([missed, PRUNED35_Q3], forced=0.2) == (None, PRUNED35_Q3)
