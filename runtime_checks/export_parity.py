"""Reload an artifact in the runtime that serves it and compare it with the
torch model on a fixed text; fail when it is beyond the tolerance for its type."""

from __future__ import annotations

from dataclasses import dataclass

from edgecore.errors import GPruneError
from runtime_checks.backends import load_backend
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.parity import Parity, compare_logits

# Mixed prose, code, digits, unicode and whitespace runs: the parity text is also a tokenizer check.
PARITY_TEXT = (
    "The history of the printing press begins in 1440, when Johannes Gutenberg combined movable metal type "
    "with an oil-based ink and a screw press. Within fifty years presses were at work in more than two hundred "
    "European cities.\n\ndef fibonacci(n: int) -> list[int]:\n    a, b = 0, 1\n    out = []\n    for _ in range(n):\n"
    "        out.append(a)\n        a, b = b, a + b\n    return out\n\nCafé, naïve, Zürich — 東京 and "
    "Привет.   Three spaces,\ttabs,\n\n\nand blank lines. The answer is 42, not 41.5 or 1e-3."
)
GENERATION_PROMPT = "The capital of France is"
MAX_PARITY_TOKENS = 192


@dataclass(frozen=True)
class Tolerance:
    """Bounds on the parity figures; set from measurements on SmolLM2-135M (dense and pruned)
    and tiny random models, with margin (BENCHMARKS.md, export)."""
    min_top1: float
    max_kl_mean: float  # nats
    max_ppl_drift: float  # |ppl ratio - 1|


TOLERANCES = {
    # unquantized: numeric noise only
    "f32": Tolerance(0.98, 1e-3, 0.01), "fp32": Tolerance(0.98, 1e-3, 0.01),
    "f16": Tolerance(0.95, 5e-3, 0.03), "fp16": Tolerance(0.95, 5e-3, 0.03),
    "bf16": Tolerance(0.90, 3e-2, 0.10),
    # 8-bit weights
    "q8_0": Tolerance(0.90, 3e-2, 0.10), "int8": Tolerance(0.90, 3e-2, 0.10),
    "dynamic-int8": Tolerance(0.85, 5e-2, 0.15),
    # 6/5/4-bit weights
    "q6_k": Tolerance(0.85, 6e-2, 0.15), "q5_k_m": Tolerance(0.80, 0.1, 0.25),
    "q4_k_m": Tolerance(0.75, 0.25, 0.30),
    "int4": Tolerance(0.70, 0.25, 0.35),  # 4-bit with 8-bit output/v/down (q4_k_m is mostly q5_0 on SmolLM2)
}
EXACT_DTYPES = {"f32", "fp32", "f16", "fp16"}  # greedy generation is expected to match torch


def parity_ids(tokenizer) -> list[int]:
    return tokenizer(PARITY_TEXT)["input_ids"][:MAX_PARITY_TOKENS]


def check_tolerance(parity: Parity, dtype: str, artifact: str) -> None:
    tol = TOLERANCES[dtype]
    problems = []
    if parity.top1_agreement < tol.min_top1:
        problems.append(f"top-1 agreement {parity.top1_agreement:.3f} < {tol.min_top1}")
    if parity.kl_mean > tol.max_kl_mean:
        problems.append(f"mean KL {parity.kl_mean:.2e} > {tol.max_kl_mean:.0e}")
    if abs(parity.ppl_ratio - 1) > tol.max_ppl_drift:
        problems.append(f"perplexity ratio {parity.ppl_ratio:.3f} outside 1 ± {tol.max_ppl_drift}")
    if problems:
        raise GPruneError(f"{artifact} ({dtype}) fails parity with the torch model: {'; '.join(problems)}")


@dataclass
class Verification:
    parity: Parity
    generated: list[int]  # the artifact's greedy tokens
    reference_generated: list[int]  # torch's

    @property
    def generation_matches(self) -> bool:
        return self.generated == self.reference_generated


def verify(artifact, runtime: str, source, dtype: str, threads: int | None = None,
           new_tokens: int = 16) -> Verification:
    """Parity on PARITY_TEXT and greedy generation with the runtime's KV cache, against torch."""
    reference = TorchBackend(source.path, model=source.model, tokenizer=source.tokenizer)
    ids = parity_ids(source.tokenizer)
    prompt = source.tokenizer(GENERATION_PROMPT)["input_ids"]
    with load_backend(runtime, artifact, threads) as candidate:
        parity = compare_logits(reference.logits(ids), candidate.logits(ids), ids)
        generated = candidate.generate(prompt, new_tokens).tokens
    reference_generated = reference.generate(prompt, new_tokens).tokens
    return Verification(parity, generated, reference_generated)
