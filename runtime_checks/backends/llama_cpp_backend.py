"""A GGUF file on llama.cpp (through llama-cpp-python)."""

from __future__ import annotations

import time
import weakref
from pathlib import Path

import numpy as np

from edgecore.errors import GPruneError, first_line
from runtime_checks.backends.base import Backend, GenerationTiming

DEFAULT_N_CTX = 2048


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(self, path, threads: int | None = None, n_ctx: int = DEFAULT_N_CTX):
        import llama_cpp

        self.path = Path(path)
        if not self.path.is_file():
            raise GPruneError(f"{self.path}: no such file")
        self.threads = threads
        try:
            # logits_all: logits() needs every position. The score buffer is allocated lazily by the
            # OS (np.ndarray, untouched pages), so generate(), which never writes it, stays lean.
            self._llm = llama_cpp.Llama(str(self.path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                        logits_all=True, verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            raise GPruneError(f"{self.path}: llama.cpp cannot load this GGUF ({first_line(e)})") from None
        # close before interpreter teardown: llama-cpp-python's own __del__ fails once modules are gone
        self._finalizer = weakref.finalize(self, self._llm.close)

    @property
    def vocab_size(self) -> int:
        return self._llm.n_vocab()

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def _check_length(self, ids) -> None:
        if len(ids) > self.n_ctx:
            raise GPruneError(f"{len(ids)} tokens exceed llama.cpp's context of {self.n_ctx}")

    def logits(self, ids: list[int]) -> np.ndarray:
        self._check_length(ids)
        self._llm._logits_all = True
        self._llm.reset()
        self._llm.eval(list(ids))
        return np.array(self._llm.scores[:len(ids)], dtype=np.float32)

    def score_continuations(self, items, max_length: int):
        """loglik.score with the context evaluated once per item and kept in the KV cache:
        each choice rewinds to the end of the context and evaluates only its own tokens."""
        from runtime_checks.loglik import fit, score_positions

        self._llm._logits_all = True
        results = []
        for context, continuations in items:
            longest = max(len(c) for c in continuations)
            ctx = fit(context, [0] * longest, min(max_length, self.n_ctx))
            self._check_length(ctx + [0] * (longest - 1))
            self._llm.reset()
            self._llm.eval(ctx)
            row = []
            for cont in continuations:
                self._llm.n_tokens = len(ctx)  # eval() drops cached positions past n_tokens
                self._llm.eval(cont[:-1])
                logits = self._llm.scores[len(ctx) - 1:len(ctx) - 1 + len(cont)]
                row.append(score_positions(logits, cont))
            results.append(row)
        return results

    def _eval_last(self, ids: list[int]) -> int:
        """Feed `ids` on top of the cache; greedy next token from the last position only."""
        self._llm.eval(ids)
        last = np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(-1), shape=(self.vocab_size,))
        return int(last.argmax())

    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        self._check_length(list(ids) + [0] * max_new_tokens)
        # Serving mode: logits for the last position only (what a llama.cpp server computes).
        self._llm._logits_all = False
        try:
            self._llm.reset()
            start = time.perf_counter()
            token = self._eval_last(list(ids))
            first = time.perf_counter()
            tokens = [token]
            for _ in range(max_new_tokens - 1):
                tokens.append(self._eval_last([tokens[-1]]))
            end = time.perf_counter()
        finally:
            self._llm._logits_all = True
        return GenerationTiming(tokens=tokens, prompt_tokens=len(ids), prefill_s=first - start,
                                first_token_s=first - start, decode_s=max(end - first, 1e-9))

    def close(self) -> None:
        self._finalizer()
