"""What a build must reach, and the predictions that keep its search short.

`Budgets` are the device target's figures (targets.TargetProfile), each replaceable from the
command line (`build --max-size ...`). Before any model is pruned, each candidate (sparsity x
artifact type) gets a predicted size (the dense artifact's, less the pruned parameters at that
type's bytes per parameter), a least memory (its weights, plus the dense model's KV cache at the
target's context for a dense candidate) and an optimistic decode speedup (bytes read per token
against the reference's: decoding is memory-bound, and measured speedups have stayed below this
bound, BENCHMARKS.md); a candidate that cannot meet a budget even so is not built. Everything
kept is then measured, and only measurements decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig

MB = 1e6
SIZE_SLACK = 1.05  # predictions within 5% of a size budget are built and measured, not skipped
KV_BYTES = {"gguf": 2, "onnx": 4}  # per cached value: llama.cpp's f16 cache, the exported graph's fp32 one


@dataclass
class Budgets(TypedConfig):
    """A build's limits; None: no limit. Sizes in MB (10^6 bytes), as files are listed. In a
    BuildConfig these replace the target's figures where set (None: the target's)."""
    max_size_mb: float | None = None  # the artifact file(s): the target's storage_mb
    max_memory_mb: float | None = None  # what loading it and filling the target's context adds to a process
    min_decode_tok_s: float | None = None  # decode tok/s on this machine: the interval's low end
    min_decode_speedup: float | None = None  # decode tok/s over the dense model at the target's reference type
    max_perplexity_ratio: float | None = None  # worst distribution's perplexity over the reference's
    what: ClassVar[str] = "budgets"

    def validate(self) -> None:
        for name in self.field_names():
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GPruneError(f"budget {name} must be above 0, got {value:g}")

    @classmethod
    def of(cls, profile, overrides: "Budgets") -> "Budgets":
        """The target's budgets with `overrides`' figures in place of its own."""
        target = cls(max_size_mb=profile.storage_mb, max_memory_mb=profile.memory_mb,
                     min_decode_tok_s=profile.min_decode_tok_s, min_decode_speedup=profile.min_decode_speedup,
                     max_perplexity_ratio=profile.max_perplexity_ratio)
        return target.replace(**{k: v for k, v in overrides.to_dict().items() if v is not None})

    @property
    def timed(self) -> bool:
        return self.min_decode_tok_s is not None or self.min_decode_speedup is not None

    def gate(self) -> dict:
        """The budgets runtime_checks' gate checks (size is checked from the file)."""
        keys = {"max_memory_mb": "max_model_memory_mb", "min_decode_tok_s": "min_decode_tok_s",
                "min_decode_speedup": "min_decode_speedup", "max_perplexity_ratio": "max_perplexity_ratio"}
        return {gate_key: getattr(self, name) for name, gate_key in keys.items() if getattr(self, name) is not None}

    def limits(self) -> str:
        """The budgets in words, e.g. "size <= 4000 MB, memory <= 1024 MB"."""
        parts = {"max_size_mb": "size <= {:g} MB", "max_memory_mb": "memory <= {:g} MB",
                 "min_decode_tok_s": "decode >= {:g} tok/s", "min_decode_speedup": "decode >= {:g}x",
                 "max_perplexity_ratio": "perplexity ratio <= {:g}"}
        return ", ".join(text.format(getattr(self, name)) for name, text in parts.items()
                         if getattr(self, name) is not None) or "no budgets"


def predicted_size(dense_bytes: int, sparsity: float, prunable: int, total: int) -> int:
    """The artifact's bytes after removing `sparsity` of the prunable parameters, at the dense
    artifact's mean bytes per parameter."""
    return int(dense_bytes * (1 - sparsity * prunable / total))


def kv_cache_bytes(config, context_length: int, fmt: str) -> int:
    """The dense model's KV cache at `context_length` tokens on `fmt`'s runtime."""
    layers = config.num_hidden_layers
    heads = config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * layers * heads * head_dim * context_length * KV_BYTES[fmt]


def predicted_misses(budgets: Budgets, size_bytes: int, least_memory_bytes: int, reference_bytes: int) -> str | None:
    """Why a candidate of (predicted) `size_bytes`, needing at least `least_memory_bytes`, cannot
    meet the budgets, or None."""
    if budgets.max_size_mb is not None and size_bytes / MB > budgets.max_size_mb * SIZE_SLACK:
        return f"size about {size_bytes / MB:.4g} MB > {budgets.max_size_mb:g} MB"
    if budgets.max_memory_mb is not None and least_memory_bytes / MB > budgets.max_memory_mb:
        return f"its weights and KV cache alone ({least_memory_bytes / MB:.4g} MB) exceed {budgets.max_memory_mb:g} MB"
    bound = reference_bytes / size_bytes
    if budgets.min_decode_speedup is not None and bound < budgets.min_decode_speedup:
        return f"decode at most about {bound:.2f}x (bytes per token) < {budgets.min_decode_speedup:g}x"
    return None
