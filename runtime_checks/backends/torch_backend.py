"""A Hugging Face checkpoint (stock or the pruned format) on PyTorch, CPU, float32; a model already in
memory (`from_model`) runs on its own device and in its own precision."""

from __future__ import annotations

import time

import numpy as np
import torch

from edgecore.loading import load_model
from runtime_checks.backends.base import Backend, GenerationTiming


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path_or_spec, threads: int | None = None, model=None, tokenizer=None):
        """`model`/`tokenizer` take an already loaded model (tests, in-process comparisons);
        `path_or_spec` then only names it."""
        if threads:
            torch.set_num_threads(threads)
        self.threads = threads or torch.get_num_threads()
        self.path = path_or_spec
        if model is None:
            model, tokenizer = load_model(str(path_or_spec))
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_model(cls, model, tokenizer=None, threads: int | None = None,
                   label: str = "in-memory model") -> "TorchBackend":
        """A backend around a model already in memory (nothing is loaded or copied)."""
        return cls(label, threads=threads, model=model, tokenizer=tokenizer)

    @property
    def device(self) -> torch.device:
        return self.model.get_output_embeddings().weight.device

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @torch.inference_mode()
    def logits(self, ids: list[int]) -> np.ndarray:
        return self.batch_logits([list(ids)])[0]

    @torch.inference_mode()
    def batch_logits(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """Logits of several sequences in one right-padded forward; each [len(seq), vocab]."""
        hidden = self._hidden(sequences)
        head = self.model.get_output_embeddings()
        return [head(hidden[row, :len(seq)]).float().cpu().numpy() for row, seq in enumerate(sequences)]

    @torch.inference_mode()
    def score_continuations(self, items, max_length: int, batch_tokens: int = 4096):
        """Batched loglik.score: sequences sorted by length, padded batches of about `batch_tokens`
        tokens, the output layer applied only to the scored positions."""
        from runtime_checks.loglik import fit, score_positions

        flat = [(i, j, fit(ctx, cont, max_length), cont)
                for i, (ctx, conts) in enumerate(items) for j, cont in enumerate(conts)]
        flat.sort(key=lambda f: -(len(f[2]) + len(f[3])))
        results = [[None] * len(conts) for _, conts in items]
        start = 0
        while start < len(flat):
            width = len(flat[start][2]) + len(flat[start][3]) - 1  # the longest left comes first
            batch = flat[start:start + max(1, batch_tokens // width)]
            start += len(batch)
            for (i, j, ctx, cont), logits in zip(batch, self._scored_logits(batch)):
                results[i][j] = score_positions(logits, cont)
        return results

    def _scored_logits(self, batch) -> list[np.ndarray]:
        """Logits at the positions that predict each continuation, for a batch of (i, j, ctx, cont)."""
        sequences = [(ctx + cont)[:-1] for _, _, ctx, cont in batch]
        hidden = self._hidden(sequences)
        head = self.model.get_output_embeddings()
        return [head(hidden[row, len(ctx) - 1:len(ctx) - 1 + len(cont)]).float().cpu().numpy()
                for row, (_, _, ctx, cont) in enumerate(batch)]

    def _hidden(self, sequences: list[list[int]]) -> torch.Tensor:
        """Final hidden states of right-padded sequences (causal attention: real positions never see padding)."""
        longest = max(len(s) for s in sequences)
        ids = torch.zeros(len(sequences), longest, dtype=torch.long)
        mask = torch.zeros(len(sequences), longest, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        return self.model.get_decoder()(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                        use_cache=False).last_hidden_state

    @torch.inference_mode()
    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        from transformers import DynamicCache

        cache = DynamicCache()
        start = time.perf_counter()
        out = self.model(input_ids=torch.tensor([list(ids)], device=self.device), past_key_values=cache, use_cache=True)
        token = int(out.logits[0, -1].argmax())
        first = time.perf_counter()
        tokens = [token]
        for _ in range(max_new_tokens - 1):
            out = self.model(input_ids=torch.tensor([[tokens[-1]]], device=self.device),
                             past_key_values=out.past_key_values, use_cache=True)
            tokens.append(int(out.logits[0, -1].argmax()))
        end = time.perf_counter()
        return GenerationTiming(tokens=tokens, prompt_tokens=len(ids), prefill_s=first - start,
                                first_token_s=first - start, decode_s=max(end - first, 1e-9))

    def close(self) -> None:
        self.model = None
