"""The CI gate: thresholds from a small JSON/YAML file, checked against a report.

    max_accuracy_drop: 0.02      # mean over tasks of (baseline - candidate) primary accuracy, 0..1
    max_perplexity_ratio: 1.5    # worst distribution's candidate / baseline perplexity
    min_decode_speedup: 1.1      # candidate / baseline decode tok/s: its interval over pairs, see below
    min_decode_tok_s: 10         # the candidate's own decode tok/s on this machine: its interval, see below
    max_peak_memory_mb: 400      # the candidate's peak RSS in a fresh process
    max_model_memory_mb: 300     # what loading and running the model added to that process (memory.peak_rss)
    min_top1_agreement: 0.9      # next-token argmax agreement with the baseline on the fixed text

Every key is optional; an unknown key is an error (a typo must not pass the gate), and so is
a value that is not a finite number >= 0 (the two fractions at most 1).
A threshold whose figure was not measured (e.g. speed skipped) fails.

Speed is measured with noise, so min_decode_speedup and min_decode_tok_s are decided on the
median's interval (speed.ratio_interval), not the median: it passes when the interval's low end reaches the
threshold, fails when its high end is below it, and is undecided otherwise ("the machine is
too noisy to decide"; also with too few pairs for an interval). The other thresholds are
point checks. The verdict: "fail" if any threshold fails, else "undecided" if any is, else
"pass"; the CLI exits EXIT_FAIL or EXIT_UNDECIDED (exit_code)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgecore.errors import GPruneError, first_line
from runtime_checks.report_schema import (
    CandidateRun,
    Comparison,
    GateResult,
    RatioSummary,
    Report,
)

# exit statuses of a gated command (verify --gate, build); 1: errors, 2: usage (click)
EXIT_FAIL = 3
EXIT_UNDECIDED = 4
PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"


def _mean_accuracy_drop(c: Comparison, run: CandidateRun):
    delta = c.mean_accuracy.delta
    return None if delta is None else -delta


def _decode_speedup(c: Comparison, run: CandidateRun):
    return c.speed_ratio.decode_tok_s if c.speed_ratio else None


def _decode_tok_s(c: Comparison, run: CandidateRun):
    return run.speed.candidate.decode_tok_s if run.speed else None


def _peak_memory(c: Comparison, run: CandidateRun):
    return run.memory.peak_rss_mb if run.memory else None


def _model_memory(c: Comparison, run: CandidateRun):
    return run.memory.model_mb if run.memory else None


def _top1(c: Comparison, run: CandidateRun):
    return run.parity.top1_agreement


# key -> (figure from (comparison, candidate run), passes(figure, threshold), wording)
CHECKS = {
    "max_accuracy_drop": (_mean_accuracy_drop, lambda v, t: v <= t, "mean accuracy drop"),
    "max_perplexity_ratio": (lambda c, run: c.max_perplexity_ratio, lambda v, t: v <= t, "worst perplexity ratio"),
    "min_decode_speedup": (_decode_speedup, lambda v, t: v >= t, "decode speedup"),
    "min_decode_tok_s": (_decode_tok_s, lambda v, t: v >= t, "decode tok/s"),
    "max_peak_memory_mb": (_peak_memory, lambda v, t: v <= t, "peak memory (MB)"),
    "max_model_memory_mb": (_model_memory, lambda v, t: v <= t, "model memory (MB)"),
    "min_top1_agreement": (_top1, lambda v, t: v >= t, "top-1 agreement"),
}
THRESHOLD_KEYS = tuple(CHECKS)
# key -> (lowest, highest or None): beyond these a threshold is a typo or can never pass
RANGES = {"max_accuracy_drop": (0.0, 1.0), "max_perplexity_ratio": (0.0, None), "min_decode_speedup": (0.0, None),
          "min_decode_tok_s": (0.0, None), "max_peak_memory_mb": (0.0, None), "max_model_memory_mb": (0.0, None),
          "min_top1_agreement": (0.0, 1.0)}


# key -> the speed summary whose interval decides it (higher is better for each); None: not timed so
INTERVAL_CHECKS = {"min_decode_speedup": lambda speed: speed.ratio["decode_tok_s"],
                   "min_decode_tok_s": lambda speed: speed.candidate_decode}


@dataclass
class Failure:
    key: str
    backend: str
    figure: float | None  # None: not measured
    threshold: float
    summary: RatioSummary | None = None  # the interval a speed threshold was decided on

    def __str__(self) -> str:
        wording = CHECKS[self.key][2]
        got = "not measured" if self.figure is None else f"{self.figure:.4g}"
        if self.summary is not None:
            got = str(self.summary)
        return f"{self.key} [{self.backend}]: {wording} {got}, threshold {self.threshold:g}"


@dataclass
class Undecided:
    """A speed threshold inside its figure's interval (or a figure with too few pairs for one)."""
    key: str
    backend: str
    summary: RatioSummary
    threshold: float

    def __str__(self) -> str:
        why = ("too few pairs for an interval" if self.summary.interval is None
               else "the interval holds the threshold: the machine is too noisy to decide")
        return (f"{self.key} [{self.backend}]: {CHECKS[self.key][2]} {self.summary}, threshold {self.threshold:g}; "
                f"{why} (rerun on a quieter machine or with more pairs)")


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


def _interval_verdict(summary: RatioSummary, threshold: float) -> str:
    """pass / fail / undecided of a "higher is better" ratio against its threshold."""
    if summary.interval is None:
        return UNDECIDED
    low, high = summary.interval
    return PASS if low >= threshold else FAIL if high < threshold else UNDECIDED


def assess(report: Report, thresholds: dict) -> tuple[list[Failure], list[Undecided]]:
    """Failed and undecided thresholds over every candidate backend in the report."""
    failures, undecided = [], []
    for run in report.candidates:
        for key, threshold in thresholds.items():
            figure_of, passes, _ = CHECKS[key]
            figure = figure_of(run.comparison, run)
            summary = INTERVAL_CHECKS[key](run.speed) if key in INTERVAL_CHECKS and run.speed else None
            if summary is not None and figure is not None:
                verdict = _interval_verdict(summary, threshold)
                if verdict == FAIL:
                    failures.append(Failure(key, run.backend, figure, threshold, summary))
                elif verdict == UNDECIDED:
                    undecided.append(Undecided(key, run.backend, summary, threshold))
            elif figure is None or not passes(figure, threshold):
                failures.append(Failure(key, run.backend, figure, threshold))
    return failures, undecided


def evaluate(report: Report, thresholds: dict) -> list[Failure]:
    """Failed thresholds over every candidate backend in the report (undecided ones are not failures)."""
    return assess(report, thresholds)[0]


def check(report: Report, thresholds: dict) -> GateResult:
    """The gate's verdict on `report`, as recorded in report.json's "gate"."""
    failures, undecided = assess(report, thresholds)
    verdict = FAIL if failures else UNDECIDED if undecided else PASS
    return GateResult(thresholds=dict(thresholds), passed=verdict == PASS, failures=[str(f) for f in failures],
                      verdict=verdict, undecided=[str(u) for u in undecided])


def exit_code(result: GateResult) -> int:
    """The exit status of a gated command: 0 on pass, EXIT_FAIL, EXIT_UNDECIDED."""
    return {PASS: 0, FAIL: EXIT_FAIL, UNDECIDED: EXIT_UNDECIDED}[result.verdict]
