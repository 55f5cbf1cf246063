"""Speed of a candidate against its baseline, measured in alternating pairs.

On a shared machine absolute tokens/s drift; a ratio of two models timed back to
back does not (much). So each pair times both models one after the other, the
order alternating (A B, B A, ...), and every figure is reported as the median
over pairs, plus per-pair ratios (candidate / baseline) with their median, min, max
and a bootstrap interval of the median (../shared/BENCHMARKING.md).

How many pairs is adaptive (SpeedSettings): at least `pairs`, then more until the decode
ratio's interval is narrow enough or a cap is hit. A fixed count let noise through: a dense
GGUF timed against itself on a loaded 2-core machine read decode ratio 1.17 over 7 pairs
(pairs 0.44..1.41), so a 1.05 speedup gate passed an unpruned model; the gate now decides
on the interval (gate.py) and says "undecided" when the machine is too noisy."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from runtime_checks.report_schema import RatioSummary, SpeedComparison, SpeedFigures
from runtime_checks.settings import SpeedSettings  # importable from here too

# per model, per repetition; "higher is better" for the first two, lower for ttft
FIGURES = ("prefill_tok_s", "decode_tok_s", "ttft_ms")
STOP_FIGURE = "decode_tok_s"  # the figure whose interval decides when to stop (the gate's speed figure)
MIN_INTERVAL_PAIRS = 5  # below this a bootstrap median interval is the range of a few points: no interval
RESAMPLES = 2000
SEED = 0  # fixed: the same ratios give the same interval in every report


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


def ratio_interval(ratios: list[float], confidence: float) -> tuple[float, float] | None:
    """Percentile bootstrap interval, over pairs, of the median per-pair ratio; None with fewer
    than MIN_INTERVAL_PAIRS pairs (with 3 pairs the interval is their range, which holds the true
    median only 75% of the time, whatever the confidence asked).

    The median rather than the mean log-ratio: interference on a shared machine hits one model
    of a pair now and then and leaves one-sided outliers (a pair at 0.44 among pairs near 1);
    the median ignores them where a mean is dragged, and it is the point figure the report
    and the gate have always used, so the point lies inside its own interval. The price: a
    median's bootstrap is lumpy (its ends are observed ratios or midpoints of two), which
    the gate does not mind, since it compares ends with a threshold. Fixed seed: reproducible."""
    if len(ratios) < MIN_INTERVAL_PAIRS:
        return None
    values = np.asarray(ratios, dtype=float)
    rng = np.random.default_rng(SEED)
    medians = np.median(values[rng.integers(0, len(values), (RESAMPLES, len(values)))], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(low), float(high)


def relative_width(interval: tuple[float, float] | None) -> float:
    """high / low - 1: scale-free, so one target fits any ratio (0.10: the ends within 10%); inf
    without an interval."""
    return float("inf") if interval is None else interval[1] / interval[0] - 1


def ratio_summary(ratios: list[float], confidence: float) -> RatioSummary:
    interval = ratio_interval(ratios, confidence) or (None, None)
    return RatioSummary(median=statistics.median(ratios), min=min(ratios), max=max(ratios), pairs=list(ratios),
                        low=interval[0], high=interval[1])


def _stop_reason(ratios: list[float], settings: SpeedSettings, elapsed: float,
                 decide: float | None = None) -> str | None:
    """Why no further pair is timed, or None to time another. The time cap stops before a pair
    that would end past it (judged by the mean pair so far); the minimum pairs always run.
    With `decide` (a threshold the decode ratio is gated on), an interval that excludes it ends
    the timing however wide, and one that holds it goes on to the caps however narrow: pairs
    are spent where they change the verdict."""
    n = len(ratios)
    if n < settings.pairs:
        return None
    interval = ratio_interval(ratios, settings.confidence)
    if decide is not None and interval is not None:
        if not interval[0] <= decide <= interval[1]:
            return "decided"
    elif relative_width(interval) <= settings.target_width:
        return "width"
    if n >= settings.pair_cap:
        return "max_pairs"
    if settings.max_seconds is not None and elapsed * (n + 1) / n > settings.max_seconds:
        return "max_seconds"
    return None


def _postfix(ratios: list[float], confidence: float) -> str:
    interval = ratio_interval(ratios, confidence)
    bounds = "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"decode x{statistics.median(ratios):.3f}{bounds}"


def compare_speed(candidate, baseline, prompt_source: list[int], settings: SpeedSettings,
                  clock=time.perf_counter, decide: float | None = None) -> SpeedComparison:
    """Medians per model and candidate/baseline ratios per pair, each ratio with its interval;
    `prompt_source` supplies the prompts. Pairs are added until `_stop_reason` says stop (with
    `decide`, the decode threshold a gate will check); `clock` is for tests (a fake backend with
    a fake clock)."""
    prefill_ids = prompt_source[:settings.prefill_tokens]
    prompt_ids = prompt_source[:settings.prompt_tokens]
    run = {"candidate": candidate, "baseline": baseline}
    started = clock()
    for backend in run.values():  # warm-up: first calls allocate buffers and fault pages in
        measure_once(backend, prefill_ids[:32], prompt_ids, 4)
    samples = {role: Samples() for role in run}
    pairs, stopped_by = [], None
    with tqdm(total=settings.pair_cap, desc="speed pairs", unit="pair", leave=False) as bar:
        while stopped_by is None:
            order = ("candidate", "baseline") if len(pairs) % 2 == 0 else ("baseline", "candidate")
            measured = {role: measure_once(run[role], prefill_ids, prompt_ids, settings.decode_tokens)
                        for role in order}
            for role, values in measured.items():
                samples[role].add(values)
            pairs.append(measured)
            decode = [p["candidate"][STOP_FIGURE] / p["baseline"][STOP_FIGURE] for p in pairs]
            bar.update()
            bar.set_postfix_str(_postfix(decode, settings.confidence))
            stopped_by = _stop_reason(decode, settings, clock() - started, decide)
    return SpeedComparison(
        settings=settings.replace(prefill_tokens=len(prefill_ids), prompt_tokens=len(prompt_ids)),
        candidate=samples["candidate"].medians(),
        baseline=samples["baseline"].medians(),
        ratio={name: ratio_summary([p["candidate"][name] / p["baseline"][name] for p in pairs], settings.confidence)
               for name in FIGURES},
        stopped_by=stopped_by,
        seconds=clock() - started,
        candidate_decode=ratio_summary(samples["candidate"].values["decode_tok_s"], settings.confidence),
    )
