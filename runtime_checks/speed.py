"""Speed of a candidate against its baseline, measured in alternating pairs.

On a shared machine absolute tokens/s drift; a ratio of two models timed back to
back does not (much). So each pair times both models one after the other, the
order alternating (A B, B A, ...), and every figure is reported as the median
over pairs, plus per-pair ratios (candidate / baseline) with their median, min and
max (../shared/BENCHMARKING.md)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from runtime_checks.report_schema import RatioSummary, SpeedComparison, SpeedFigures
from runtime_checks.settings import SpeedSettings  # defined with the other settings; importable from here too

# per model, per repetition; "higher is better" for the first two, lower for ttft
FIGURES = ("prefill_tok_s", "decode_tok_s", "ttft_ms")


@dataclass
class Samples:
    values: dict = field(default_factory=lambda: {f: [] for f in FIGURES})

    def add(self, measured: dict) -> None:
        for name in FIGURES:
            self.values[name].append(measured[name])

    def medians(self) -> SpeedFigures:
        return SpeedFigures(**{name: statistics.median(v) for name, v in self.values.items()})


def measure_once(backend, prefill_ids: list[int], prompt_ids: list[int], decode_tokens: int) -> dict:
    prefill = backend.generate(prefill_ids, 1)
    decode = backend.generate(prompt_ids, decode_tokens)
    return {"prefill_tok_s": prefill.prefill_tok_s, "decode_tok_s": decode.decode_tok_s,
            "ttft_ms": decode.first_token_s * 1000}


def _ratio_summary(ratios: list[float]) -> RatioSummary:
    return RatioSummary(median=statistics.median(ratios), min=min(ratios), max=max(ratios), pairs=ratios)


def compare_speed(candidate, baseline, prompt_source: list[int], settings: SpeedSettings) -> SpeedComparison:
    """Medians per model and candidate/baseline ratios per pair; `prompt_source` supplies the prompts."""
    prefill_ids = prompt_source[:settings.prefill_tokens]
    prompt_ids = prompt_source[:settings.prompt_tokens]
    run = {"candidate": candidate, "baseline": baseline}
    for backend in run.values():  # warm-up: first calls allocate buffers and fault pages in
        measure_once(backend, prefill_ids[:32], prompt_ids, 4)
    samples = {role: Samples() for role in run}
    pairs = []
    for i in tqdm(range(settings.pairs), desc="speed pairs", unit="pair", leave=False):
        order = ("candidate", "baseline") if i % 2 == 0 else ("baseline", "candidate")
        measured = {role: measure_once(run[role], prefill_ids, prompt_ids, settings.decode_tokens)
                    for role in order}
        for role, values in measured.items():
            samples[role].add(values)
        pairs.append(measured)
    return SpeedComparison(
        settings=settings.replace(prefill_tokens=len(prefill_ids), prompt_tokens=len(prompt_ids)),
        candidate=samples["candidate"].medians(),
        baseline=samples["baseline"].medians(),
        ratio={name: _ratio_summary([p["candidate"][name] / p["baseline"][name] for p in pairs]) for name in FIGURES},
    )
