"""The check run after every export: reload the artifact in the runtime that serves it,
compare it with the torch model it was exported from on a fixed text (check_export), and
fail when it is beyond the tolerance for its dtype (check_tolerance)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from edgecore.errors import GPruneError
from edgecore.model_layers import layerwise_logits, model_layers
from runtime_checks.backends import load_backend
from runtime_checks.parity import Parity, check_same_vocabulary, check_tokenizer_fits, compare_logits

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
    "q8_0": Tolerance(0.90, 3e-2, 0.10), "int8": Tolerance(0.90, 3e-2, 0.10), "int8-dq": Tolerance(0.90, 3e-2, 0.10),
    "dynamic-int8": Tolerance(0.85, 5e-2, 0.15),
    # 6/5/4-bit weights
    "q6_k": Tolerance(0.85, 6e-2, 0.15), "q5_k_m": Tolerance(0.80, 0.1, 0.25),
    "q4_k_m": Tolerance(0.75, 0.25, 0.30),
    "int4": Tolerance(0.70, 0.25, 0.35),  # 4-bit with 8-bit output/v/down (q4_k_m is mostly q5_0 on SmolLM2)
    "int4-dq": Tolerance(0.70, 0.25, 0.35),  # the same blocks as int4, dequantized at load
    # 3/2-bit k-quants: a real loss, which their users accept for size; the bound only catches a broken file
    "q3_k_m": Tolerance(0.55, 0.6, 1.0), "q2_k": Tolerance(0.40, 1.5, 3.0),
}
EXACT_DTYPES = {"f32", "fp32", "f16", "fp16"}  # greedy generation is expected to match torch


def parity_ids(tokenizer) -> list[int]:
    return tokenizer(PARITY_TEXT)["input_ids"][:MAX_PARITY_TOKENS]


def _tolerance(dtype: str) -> Tolerance:
    if dtype not in TOLERANCES:
        raise GPruneError(f"no parity tolerance for dtype {dtype!r}; known: {', '.join(TOLERANCES)}")
    return TOLERANCES[dtype]


def check_tolerance(parity: Parity, dtype: str, what: str) -> None:
    """Raise GPruneError, in one line naming every figure out of bounds (or NaN), when `parity`
    is beyond TOLERANCES[dtype]; `what` names the artifact in the message (e.g. "gguf export")."""
    tol = _tolerance(dtype)
    figures = {f.name: getattr(parity, f.name) for f in fields(parity)} | {"ppl_ratio": parity.ppl_ratio}
    nan = {name for name, value in figures.items() if math.isnan(value)}
    problems = [f"{name} is NaN" for name in figures if name in nan]
    if "top1_agreement" not in nan and parity.top1_agreement < tol.min_top1:
        problems.append(f"top-1 agreement {parity.top1_agreement:.3f} < {tol.min_top1}")
    if "kl_mean" not in nan and parity.kl_mean > tol.max_kl_mean:
        problems.append(f"mean KL {parity.kl_mean:.2e} > {tol.max_kl_mean:.0e}")
    if "ppl_ratio" not in nan and abs(parity.ppl_ratio - 1) > tol.max_ppl_drift:
        problems.append(f"perplexity ratio {parity.ppl_ratio:.3f} outside 1 ± {tol.max_ppl_drift}")
    if problems:
        raise GPruneError(f"{what} ({dtype}) fails parity with the torch model: {'; '.join(problems)}")


@dataclass
class ExportCheck:
    parity: Parity  # the artifact on its runtime against the torch model, on PARITY_TEXT
    generated: list[int]  # the artifact's greedy tokens after GENERATION_PROMPT (its runtime's KV cache)
    reference_generated: list[int]  # torch's argmax after the prompt and each prefix of `generated`

    @property
    def generation_matches(self) -> bool:
        return self.generated == self.reference_generated


def check_export(artifact: Path, runtime: str, model, tokenizer, dtype: str, threads: int | None = None,
                 new_tokens: int = 16) -> ExportCheck:
    """Parity on PARITY_TEXT and greedy generation with the runtime's KV cache, against `model` (the
    torch model the artifact was exported from: in memory, or `ModelLayers` read a layer at a time) on
    torch. Torch's side is computed one decoder layer at a time (layerwise_logits), so a checkpoint
    larger than memory is checked too; its greedy tokens are scored teacher-forced on the artifact's
    (each the argmax after the prompt and the artifact's tokens before it), which equal the artifact's
    exactly when torch's own greedy generation would. `dtype` is the artifact's (a TOLERANCES key);
    the result is measured, not judged: pass it to check_tolerance."""
    _tolerance(dtype)  # an unknown dtype fails before anything is loaded
    vocab_size = model_layers(model).config.vocab_size
    check_tokenizer_fits("the tokenizer", len(tokenizer), "the torch model", vocab_size,
                         "export the model with its own tokenizer")
    ids = parity_ids(tokenizer)
    prompt = tokenizer(GENERATION_PROMPT)["input_ids"]
    with load_backend(runtime, artifact, threads) as candidate:
        check_same_vocabulary(f"the {runtime} artifact {artifact}", candidate.vocab_size, "the torch model it was "
                              "exported from", vocab_size, "re-export it from this model")
        candidate_logits = candidate.logits(ids)
        generated = candidate.generate(prompt, new_tokens).tokens
    parity = compare_logits(layerwise_logits(model, ids).numpy(), candidate_logits, ids)
    forced = layerwise_logits(model, prompt + generated[:-1])
    reference_generated = forced[len(prompt) - 1:].argmax(-1).tolist() if generated else []
    return ExportCheck(parity, generated, reference_generated)
