"""Candidate figures next to the baseline's: deltas for accuracies, ratios for the rest."""

from __future__ import annotations

import statistics

from runtime_checks.report_schema import (
    Comparison,
    MeanAccuracy,
    MemoryDelta,
    MemoryPeak,
    PerplexityDelta,
    Run,
    SpeedComparison,
    SpeedFigures,
    TaskDelta,
)


def _ratio(candidate, baseline):
    return None if candidate is None or baseline in (None, 0) else candidate / baseline


def _tasks(candidate: dict, baseline: dict) -> dict[str, TaskDelta]:
    rows = {}
    for name, cand in candidate.items():
        base = baseline.get(name)
        if base is not None:
            rows[name] = TaskDelta(metric=cand.metric, candidate=cand.primary, baseline=base.primary,
                                   delta=cand.primary - base.primary, chance=cand.chance, n=cand.n)
    return rows


def _perplexity(candidate: dict, baseline: dict) -> dict[str, PerplexityDelta]:
    return {name: PerplexityDelta(candidate=cand.perplexity, baseline=baseline[name].perplexity,
                                  ratio=cand.perplexity / baseline[name].perplexity)
            for name, cand in candidate.items() if name in baseline}


def _memory(candidate: MemoryPeak | None, baseline: MemoryPeak | None) -> MemoryDelta | None:
    if not candidate or not baseline:
        return None
    return MemoryDelta(candidate_mb=candidate.peak_rss_mb, baseline_mb=baseline.peak_rss_mb,
                       ratio=candidate.peak_rss_mb / baseline.peak_rss_mb,
                       candidate_model_mb=candidate.model_mb, baseline_model_mb=baseline.model_mb,
                       model_ratio=_ratio(candidate.model_mb, baseline.model_mb))


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def compare_runs(candidate: Run, baseline: Run, speed: SpeedComparison | None = None) -> Comparison:
    """The figures the gate and the report's summary read; `speed` is the candidate's timing against the baseline."""
    task_rows = _tasks(candidate.tasks, baseline.tasks)
    ppl_rows = _perplexity(candidate.perplexity, baseline.perplexity)
    rows = list(task_rows.values())
    return Comparison(
        tasks=task_rows,
        mean_accuracy=MeanAccuracy(candidate=_mean([r.candidate for r in rows]),
                                   baseline=_mean([r.baseline for r in rows]), delta=_mean([r.delta for r in rows])),
        perplexity=ppl_rows,
        max_perplexity_ratio=max((r.ratio for r in ppl_rows.values()), default=None),
        memory=_memory(candidate.memory, baseline.memory),
        file_mb_ratio=_ratio(candidate.artifact.file_bytes, baseline.artifact.file_bytes),
        parameters_ratio=_ratio(candidate.artifact.parameters, baseline.artifact.parameters),
        speed_ratio=SpeedFigures(**{name: r.median for name, r in speed.ratio.items()}) if speed else None,
    )
