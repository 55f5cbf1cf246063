"""What a budget build must reach, and the predictions that keep its search short.

`Budgets` are the user's limits (`build --max-size ...`). Before any model is pruned, each
candidate (sparsity x artifact type) gets a predicted size (the dense artifact's, less the
pruned parameters at that type's bytes per parameter) and an optimistic decode speedup
(bytes read per token against the reference's: decoding is memory-bound, and measured
speedups have stayed below this bound, BENCHMARKS.md); a candidate that cannot meet a
budget even so is not built. Everything kept is then measured, and only measurements decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig

MB = 1e6
SIZE_SLACK = 1.05  # predictions within 5% of a size budget are built and measured, not skipped


@dataclass
class Budgets(TypedConfig):
    """Limits for a budget build; None: no limit. Sizes in MB (10^6 bytes), as files are listed."""
    max_size_mb: float | None = None  # the artifact file(s)
    min_decode_speedup: float | None = None  # decode tok/s over the dense model at the target's default type
    max_memory_mb: float | None = None  # peak RSS of a fresh runtime process that loads and runs it
    max_perplexity_ratio: float | None = None  # worst distribution's perplexity over the reference's
    what: ClassVar[str] = "budgets"

    def validate(self) -> None:
        for name in self.field_names():
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GPruneError(f"budget {name} must be above 0, got {value:g}")

    @property
    def given(self) -> bool:
        return any(getattr(self, name) is not None for name in self.field_names())

    def gate(self) -> dict:
        """The budgets runtime_checks' gate checks (size is checked from the file)."""
        keys = {"min_decode_speedup": "min_decode_speedup", "max_memory_mb": "max_peak_memory_mb",
                "max_perplexity_ratio": "max_perplexity_ratio"}
        return {gate_key: getattr(self, name) for name, gate_key in keys.items() if getattr(self, name) is not None}

    def describe(self) -> str:
        parts = {"max_size_mb": "size <= {:g} MB", "min_decode_speedup": "decode >= {:g}x",
                 "max_memory_mb": "memory <= {:g} MB", "max_perplexity_ratio": "perplexity ratio <= {:g}"}
        return ", ".join(text.format(getattr(self, name)) for name, text in parts.items()
                         if getattr(self, name) is not None)


def predicted_size(dense_bytes: int, sparsity: float, prunable: int, total: int) -> int:
    """The artifact's bytes after removing `sparsity` of the prunable parameters, at the dense
    artifact's mean bytes per parameter."""
    return int(dense_bytes * (1 - sparsity * prunable / total))


def predicted_misses(budgets: Budgets, size_bytes: int, reference_bytes: int) -> str | None:
    """Why a candidate of (predicted) `size_bytes` cannot meet the budgets, or None."""
    if budgets.max_size_mb is not None and size_bytes / MB > budgets.max_size_mb * SIZE_SLACK:
        return f"size about {size_bytes / MB:.4g} MB > {budgets.max_size_mb:g} MB"
    if budgets.max_memory_mb is not None and size_bytes / MB > budgets.max_memory_mb:
        return f"its weights alone ({size_bytes / MB:.4g} MB) exceed the memory budget"
    bound = reference_bytes / size_bytes
    if budgets.min_decode_speedup is not None and bound < budgets.min_decode_speedup:
        return f"decode at most about {bound:.2f}x (bytes per token) < {budgets.min_decode_speedup:g}x"
    return None
