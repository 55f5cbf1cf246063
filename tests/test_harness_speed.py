"""The faster scoring computes what the slower one did: loglik's blockwise normaliser against
the float64 log-softmax, and the llama.cpp backend (logits read in place, only where scored)
against llama-cpp-python's own `Llama.eval` with every position's logits (its former path)."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import needs_llama_cpp, write, write_tiny

from runtime_checks.loglik import Scored, log_softmax, score, score_positions


def reference_score(logits: np.ndarray, targets: list[int]) -> Scored:
    """The definition: float64 log-softmax over the whole array, picked targets summed."""
    logp = log_softmax(logits)
    picked = logp[np.arange(len(targets)), targets]
    return Scored(float(picked.sum()), bool((logits.argmax(-1) == np.asarray(targets)).all()), len(targets))


def test_score_positions_matches_float64_log_softmax():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((75, 5000)) * 4).astype(np.float32)
    logits[3, 17] = 60.0  # a peaked row: the normaliser is dominated by one entry
    targets = rng.integers(0, 5000, 75).tolist()
    targets[3] = 17
    fast, slow = score_positions(logits, targets), reference_score(logits, targets)
    assert fast.logprob == pytest.approx(slow.logprob, rel=1e-9, abs=1e-5)
    assert (fast.greedy, fast.tokens) == (slow.greedy, slow.tokens)
    parts = score_positions(logits[:40], targets[:40]) + score_positions(logits[40:], targets[40:])
    assert parts.logprob == pytest.approx(fast.logprob, abs=1e-9) and parts.tokens == 75


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from exporters import load_source

    tmp = tmp_path_factory.mktemp("gguf")
    return write(load_source(write_tiny(tmp / "pruned", uniform=True)), "gguf", "q8_0", tmp / "m.gguf").path


@needs_llama_cpp
def test_llama_cpp_scoring_matches_eval_with_every_logit(tiny_gguf):
    import llama_cpp

    from runtime_checks.backends import load_backend

    rng = np.random.default_rng(1)

    def ids(n):
        return rng.integers(3, 128, n).tolist()

    items = [(ids(9), [ids(1), ids(4), ids(2)]), (ids(1), [ids(700)]),  # a window longer than one batch
             (ids(600), [ids(3), ids(30)])]
    ref = llama_cpp.Llama(str(tiny_gguf), n_ctx=2048, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    try:
        expected = []
        for ctx, conts in items:  # the former path: context once, each choice rewound onto the cache
            ref.reset()
            ref.eval(ctx)
            row = []
            for cont in conts:
                ref.n_tokens = len(ctx)
                ref.eval(cont[:-1])
                row.append(reference_score(ref.scores[len(ctx) - 1:len(ctx) - 1 + len(cont)], cont))
            expected.append(row)
        ref.reset()
        ref.eval(items[2][0])
        expected_logits = np.array(ref.scores[:600])
    finally:
        ref.close()
    with load_backend("llama.cpp", tiny_gguf, threads=1) as backend:
        got = score(backend, items)
        logits = backend.logits(items[2][0])
        assert len(backend.generate(ids(5), 3).tokens) == 3  # serving after scoring: the cache is rewound
    for e_row, g_row in zip(expected, got, strict=True):
        for e, g in zip(e_row, g_row, strict=True):
            assert g.logprob == pytest.approx(e.logprob, rel=1e-9, abs=1e-4)
            assert (g.greedy, g.tokens) == (e.greedy, e.tokens)
    np.testing.assert_array_equal(logits, expected_logits)
