"""Candidate figures next to the baseline's: deltas for accuracies, ratios for the rest."""

from __future__ import annotations

import statistics


def _ratio(candidate, baseline):
    return None if candidate is None or baseline in (None, 0) else candidate / baseline


def _tasks(candidate: dict, baseline: dict) -> dict:
    rows = {}
    for name, cand in candidate.items():
        base = baseline.get(name)
        if base is not None:
            rows[name] = {"metric": cand["metric"], "candidate": cand["primary"], "baseline": base["primary"],
                          "delta": cand["primary"] - base["primary"], "chance": cand["chance"], "n": cand["n"]}
    return rows


def _perplexity(candidate: dict, baseline: dict) -> dict:
    return {name: {"candidate": cand["perplexity"], "baseline": baseline[name]["perplexity"],
                   "ratio": cand["perplexity"] / baseline[name]["perplexity"]}
            for name, cand in candidate.items() if name in baseline}


def _memory(candidate, baseline) -> dict | None:
    if not candidate or not baseline:
        return None
    return {"candidate_mb": candidate["peak_rss_mb"], "baseline_mb": baseline["peak_rss_mb"],
            "ratio": candidate["peak_rss_mb"] / baseline["peak_rss_mb"],
            "candidate_model_mb": candidate["model_mb"], "baseline_model_mb": baseline["model_mb"],
            "model_ratio": _ratio(candidate["model_mb"], baseline["model_mb"])}


def compare_runs(candidate: dict, baseline: dict) -> dict:
    """The figures the gate and the report's summary read; `candidate` also carries parity and speed."""
    task_rows = _tasks(candidate["tasks"], baseline["tasks"])
    ppl_rows = _perplexity(candidate["perplexity"], baseline["perplexity"])
    speed = candidate.get("speed")
    return {
        "tasks": task_rows,
        "mean_accuracy": {
            "candidate": statistics.mean(r["candidate"] for r in task_rows.values()) if task_rows else None,
            "baseline": statistics.mean(r["baseline"] for r in task_rows.values()) if task_rows else None,
            "delta": statistics.mean(r["delta"] for r in task_rows.values()) if task_rows else None,
        },
        "perplexity": ppl_rows,
        "max_perplexity_ratio": max((r["ratio"] for r in ppl_rows.values()), default=None),
        "memory": _memory(candidate.get("memory"), baseline.get("memory")),
        "file_mb_ratio": _ratio(candidate["artifact"]["file_bytes"], baseline["artifact"]["file_bytes"]),
        "parameters_ratio": _ratio(candidate["artifact"]["parameters"], baseline["artifact"]["parameters"]),
        "speed_ratio": {name: r["median"] for name, r in speed["ratio"].items()} if speed else None,
    }
