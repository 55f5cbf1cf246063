"""Log-likelihood of continuations given contexts, as lm-evaluation-harness computes it.

Tokenization follows the harness's `_encode_pair`: trailing spaces of the context move
to the continuation; the context is encoded alone, the whole string (context +
continuation) is encoded once, and the continuation tokens are the whole string's
tokens after the context's length. No special tokens are added (the harness's default
for causal models); an empty context becomes [EOS], as in the harness. Inputs longer
than `max_length` lose tokens at the left of the context.

A scored item is (context_ids, [continuation_ids, ...]): one shared context and its
choices, so runtimes can reuse the context (llama.cpp's KV cache) or batch the choices
(torch). Backends with a `score_continuations(items, max_length)` method use it; any
other Backend is scored through `Backend.logits` on each context + continuation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_LENGTH = 2048

Item = tuple[list[int], list[list[int]]]


@dataclass
class Scored:
    logprob: float  # sum of log p(continuation tokens | context), nats
    greedy: bool  # every continuation token is the argmax at its position
    tokens: int  # continuation length in tokens

    def __add__(self, other: Scored) -> Scored:
        """A continuation scored in two parts (runtimes that hand out its logits in batches)."""
        return Scored(self.logprob + other.logprob, self.greedy and other.greedy, self.tokens + other.tokens)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context_ids, continuation_ids) split as the harness splits them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    continuation_ids = whole[len(context_ids):]
    if not continuation_ids:  # the boundary merged into one token: fall back to separate encodings
        continuation_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not context_ids:
        context_ids = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id]
    return list(context_ids), list(continuation_ids)


def fit(context: list[int], continuation: list[int], max_length: int) -> list[int]:
    """The context cut at the left so that context + continuation minus its last token fits."""
    room = max(1, max_length + 1 - len(continuation))
    return context[-room:]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def logsumexp_rows(logits: np.ndarray, block: int = 32) -> np.ndarray:
    """float64 log(sum(exp(row))) per row, a few rows at a time with float32 exp and float64 sums:
    log_softmax's normaliser to ~1e-6 without its float64 [rows, vocab] temporaries, which took
    0.5 s per 512-token window (fresh pages every call), a quarter of llama.cpp's forward on 1 thread."""
    out = np.empty(len(logits))
    for start in range(0, len(logits), block):
        rows = np.asarray(logits[start:start + block], dtype=np.float32)
        top = rows.max(-1, keepdims=True)
        out[start:start + block] = top[:, 0] + np.log(np.exp(rows - top).sum(-1, dtype=np.float64))
    return out


def score_positions(logits: np.ndarray, targets: list[int]) -> Scored:
    """`logits` [len(targets), vocab]: row i predicts targets[i]."""
    targets = np.asarray(targets, dtype=np.intp)
    picked = logits[np.arange(len(targets)), targets].astype(np.float64) - logsumexp_rows(logits)
    return Scored(float(picked.sum()), bool((logits.argmax(-1) == targets).all()), len(targets))


def _score_by_logits(backend, items: list[Item], max_length: int) -> list[list[Scored]]:
    scored = []
    for context, continuations in items:
        row = []
        for cont in continuations:
            ctx = fit(context, cont, max_length)
            logits = backend.logits((ctx + cont)[:-1])
            row.append(score_positions(logits[len(ctx) - 1:], cont))
        scored.append(row)
    return scored


def score(backend, items: list[Item], max_length: int = DEFAULT_MAX_LENGTH) -> list[list[Scored]]:
    """One `Scored` per continuation of each item, in input order."""
    if hasattr(backend, "score_continuations"):
        return backend.score_continuations(items, max_length)
    return _score_by_logits(backend, items, max_length)
