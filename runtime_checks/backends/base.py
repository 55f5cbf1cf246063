"""The interface every runtime backend implements. Inputs are token ids from the
model's Hugging Face tokenizer, so every backend sees exactly the same tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class GenerationTiming:
    tokens: list[int]  # generated ids (greedy)
    prompt_tokens: int
    prefill_s: float  # one forward over the prompt
    first_token_s: float  # prompt submitted -> first token out
    decode_s: float  # all single-token steps after the first token

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s

    @property
    def decode_tok_s(self) -> float:
        return max(len(self.tokens) - 1, 1) / self.decode_s


class Backend(ABC):
    """A loaded model on one runtime."""

    name: str  # "torch", "llama.cpp", "onnxruntime"
    # True: the KV cache is allocated at load for a context length (llama.cpp), and the class takes
    # `context_length` and `flash_attention`; the others grow their cache with the sequence
    allocates_context = False

    @abstractmethod
    def logits(self, ids: list[int]) -> np.ndarray:
        """float32 [len(ids), vocab]: next-token logits after each prefix of `ids` (one sequence, no cache)."""

    @abstractmethod
    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        """Greedy generation with the runtime's KV cache, timed."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def close(self) -> None:
        """Release the model (runtimes that hold native memory override this)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
