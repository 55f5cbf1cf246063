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
    allocates_context = True

    def __init__(self, path, threads: int | None = None, context_length: int | None = None,
                 flash_attention: bool = False):
        """`flash_attention`: llama.cpp's flash attention kernels. Without them the V cache is stored
        transposed, and a model whose layers have different KV widths (deci) gets every layer's V cache
        padded to the widest; with them each layer's cache has its own width."""
        import llama_cpp

        self.path = Path(path)
        if not self.path.is_file():
            raise GPruneError(f"{self.path}: no such file")
        self.threads = threads
        try:
            # logits_all stays off: generate() asks for the last position only (what a llama.cpp server
            # computes), and scoring (_feed) says per batch which positions it needs
            self._llm = llama_cpp.Llama(str(self.path), n_ctx=context_length or DEFAULT_N_CTX, n_threads=threads,
                                        n_threads_batch=threads, flash_attn=flash_attention, verbose=False)
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

    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self.n_ctx:
            raise GPruneError(f"{n_tokens} tokens exceed llama.cpp's context of {self.n_ctx}")

    def _feed(self, tokens: list[int], start: int, every: bool):
        """Feed `tokens` at positions start.. on top of the cache's first `start` positions, in
        llama-cpp-python's batches (what Llama.eval does, so the figures are eval's to the bit); yield
        each batch's logits, of every position or (every=False) of the last batch's last one. A
        yielded array is llama.cpp's own buffer, valid until the next batch: read in place, where
        eval copied [positions, vocab] floats into Llama.scores (100 MB per 512-token window)."""
        llm = self._llm
        llm.n_tokens = 0  # llama-cpp-python's bookkeeping of the cache: generate() starts from reset()
        llm._ctx.kv_cache_seq_rm(0, start, -1)
        for offset in range(0, len(tokens), llm.n_batch):
            batch = tokens[offset:offset + llm.n_batch]
            wanted = every or offset + len(batch) == len(tokens)
            llm._batch.set_batch(batch=batch, n_past=start + offset, logits_all=every)
            llm._ctx.decode(llm._batch)
            if wanted:
                yield np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(batch) if every else 1, self.vocab_size))

    def logits(self, ids: list[int]) -> np.ndarray:
        self._check_length(len(ids))
        return np.concatenate([batch.copy() for batch in self._feed(list(ids), 0, every=True)])

    def score_continuations(self, items, max_length: int):
        """loglik.score with the context evaluated once per item and kept in the KV cache: each
        choice rewinds to the end of the context and evaluates only its own tokens. Only the logits
        that are scored are computed: the context's last position's, then each choice's."""
        from runtime_checks.loglik import fit, score_positions

        results = []
        for context, continuations in items:
            longest = max(len(c) for c in continuations)
            ctx = fit(context, [0] * longest, min(max_length, self.n_ctx))
            self._check_length(len(ctx) + longest - 1)
            [last] = [logits.copy() for logits in self._feed(ctx, 0, every=False)]  # predicts each first token
            row = []
            for cont in continuations:
                scored = score_positions(last, cont[:1])
                done = 1
                for logits in self._feed(cont[:-1], len(ctx), every=True):
                    scored += score_positions(logits, cont[done:done + len(logits)])
                    done += len(logits)
                row.append(scored)
            results.append(row)
        return results

    def _eval_last(self, ids: list[int]) -> int:
        """Feed `ids` on top of the cache; greedy next token from the last position only."""
        self._llm.eval(ids)
        last = np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(-1), shape=(self.vocab_size,))
        return int(last.argmax())

    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        self._check_length(len(ids) + max_new_tokens)
        self._llm.reset()
        start = time.perf_counter()
        token = self._eval_last(list(ids))
        first = time.perf_counter()
        tokens = [token]
        for _ in range(max_new_tokens - 1):
            tokens.append(self._eval_last([tokens[-1]]))
        end = time.perf_counter()
        return GenerationTiming(tokens=tokens, prompt_tokens=len(ids), prefill_s=first - start,
                                first_token_s=first - start, decode_s=max(end - first, 1e-9))

    def close(self) -> None:
        self._finalizer()
