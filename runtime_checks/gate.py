"""The CI gate: thresholds from a small JSON/YAML file, checked against a report.

    max_accuracy_drop: 0.02      # mean over tasks of (baseline - candidate) primary accuracy, 0..1
    max_perplexity_ratio: 1.5    # worst distribution's candidate / baseline perplexity
    min_decode_speedup: 1.1      # median over pairs of candidate / baseline decode tok/s
    max_peak_memory_mb: 400      # the candidate's peak RSS in a fresh process
    min_top1_agreement: 0.9      # next-token argmax agreement with the baseline on the fixed text

Every key is optional; an unknown key is an error (a typo must not pass the gate), and so is
a value that is not a finite number >= 0 (the two fractions at most 1).
A threshold whose figure was not measured (e.g. speed skipped) fails."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgecore.errors import GPruneError, first_line
from runtime_checks.report_schema import CandidateRun, Comparison, GateResult, Report


def _mean_accuracy_drop(c: Comparison, run: CandidateRun):
    delta = c.mean_accuracy.delta
    return None if delta is None else -delta


def _decode_speedup(c: Comparison, run: CandidateRun):
    return c.speed_ratio.decode_tok_s if c.speed_ratio else None


def _peak_memory(c: Comparison, run: CandidateRun):
    return run.memory.peak_rss_mb if run.memory else None


def _top1(c: Comparison, run: CandidateRun):
    return run.parity.top1_agreement


# key -> (figure from (comparison, candidate run), passes(figure, threshold), wording)
CHECKS = {
    "max_accuracy_drop": (_mean_accuracy_drop, lambda v, t: v <= t, "mean accuracy drop"),
    "max_perplexity_ratio": (lambda c, run: c.max_perplexity_ratio, lambda v, t: v <= t, "worst perplexity ratio"),
    "min_decode_speedup": (_decode_speedup, lambda v, t: v >= t, "decode speedup"),
    "max_peak_memory_mb": (_peak_memory, lambda v, t: v <= t, "peak memory (MB)"),
    "min_top1_agreement": (_top1, lambda v, t: v >= t, "top-1 agreement"),
}
THRESHOLD_KEYS = tuple(CHECKS)
# key -> (lowest, highest or None): beyond these a threshold is a typo or can never pass
RANGES = {"max_accuracy_drop": (0.0, 1.0), "max_perplexity_ratio": (0.0, None), "min_decode_speedup": (0.0, None),
          "max_peak_memory_mb": (0.0, None), "min_top1_agreement": (0.0, 1.0)}


@dataclass
class Failure:
    key: str
    backend: str
    figure: float | None  # None: not measured
    threshold: float

    def __str__(self) -> str:
        wording = CHECKS[self.key][2]
        got = "not measured" if self.figure is None else f"{self.figure:.4g}"
        return f"{self.key} [{self.backend}]: {wording} {got}, threshold {self.threshold:g}"


def _check_value(key: str, value, what: str) -> float:
    low, high = RANGES[key]
    valid = f"a number >= {low:g}" if high is None else f"a number from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GPruneError(f"{what}: {key} must be {valid}, got {value!r}")
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        raise GPruneError(f"{what}: {key} must be {valid}, got {value!r}")
    return float(value)


def check_thresholds(data, what: str) -> dict:
    """`data` (parsed JSON/YAML, or a target profile's gate) as {key: float}, or GPruneError in one
    line starting with `what`: not a mapping, an unknown key, a value that is not a number in the
    key's range (RANGES: never negative, NaN or infinite; fractions at most 1)."""
    if not isinstance(data, dict):
        raise GPruneError(f"{what}: expected a mapping of thresholds, e.g. max_perplexity_ratio: 1.5")
    unknown = sorted(set(data) - set(CHECKS))
    if unknown:
        raise GPruneError(f"{what}: unknown threshold key(s) {', '.join(map(str, unknown))}; "
                          f"known: {', '.join(THRESHOLD_KEYS)}")
    return {key: _check_value(key, value, what) for key, value in data.items()}


def load_thresholds(path) -> dict:
    """check_thresholds of a JSON or YAML file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON: one parser for both
    except OSError as e:
        raise GPruneError(f"cannot read gate file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise GPruneError(f"{path}: not valid JSON/YAML ({first_line(e)})") from None
    return check_thresholds(data, str(path))


def evaluate(report: Report, thresholds: dict) -> list[Failure]:
    """Failed thresholds over every candidate backend in the report (empty: the gate passes)."""
    failures = []
    for run in report.candidates:
        for key, threshold in thresholds.items():
            figure_of, passes, _ = CHECKS[key]
            figure = figure_of(run.comparison, run)
            if figure is None or not passes(figure, threshold):
                failures.append(Failure(key, run.backend, figure, threshold))
    return failures


def check(report: Report, thresholds: dict) -> GateResult:
    """The gate's verdict on `report`, as recorded in report.json's "gate"."""
    failures = evaluate(report, thresholds)
    return GateResult(thresholds=dict(thresholds), passed=not failures, failures=[str(f) for f in failures])
