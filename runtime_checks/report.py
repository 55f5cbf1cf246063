"""A verification report as report.json, report.md and a self-contained report.html
(plots inlined as base64 PNG, so the file can be mailed or attached to a CI run)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from runtime_checks.report_schema import CandidateRun, Report


def _fmt(value, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def task_rows(run: CandidateRun) -> list[list]:
    return [[name, r.metric, r.n, _fmt(r.baseline, ".3f"), _fmt(r.candidate, ".3f"), _fmt(r.delta, "+.3f"),
             _fmt(r.chance, ".2f")] for name, r in run.comparison.tasks.items()]


def perplexity_rows(run: CandidateRun) -> list[list]:
    return [[name, _fmt(r.baseline, ".3f"), _fmt(r.candidate, ".3f"), _fmt(r.ratio, ".4f")]
            for name, r in run.comparison.perplexity.items()]


def speed_rows(run: CandidateRun) -> list[list]:
    """figure, baseline, candidate, ratio as "median [low, high] (n pairs)", min, max."""
    speed = run.speed
    if not speed:
        return []
    return [[name, _fmt(getattr(speed.baseline, name), ".1f"), _fmt(getattr(speed.candidate, name), ".1f"),
             str(r), _fmt(r.min, ".3f"), _fmt(r.max, ".3f")]
            for name, r in speed.ratio.items()]


def speed_heading(run: CandidateRun) -> str:
    speed = run.speed
    pairs = len(next(iter(speed.ratio.values())).pairs)
    stopped = f", stopped by {speed.stopped_by}" if speed.stopped_by else ""
    took = f" in {speed.seconds:.0f} s" if speed.seconds is not None else ""
    return (f"### Speed ({pairs} alternating pairs{took}{stopped}; ratio = candidate / baseline per pair: "
            f"median [{speed.settings.confidence:.0%} bootstrap interval])")


def gate_lines(report: Report) -> list[str]:
    gate = report.gate
    verdict = {"pass": "All thresholds pass.", "fail": "Verdict: FAIL.",
               "undecided": "Verdict: UNDECIDED (no threshold failed; a speed threshold could not be decided)."}
    return ([verdict[gate.verdict]] + [f"- FAILED {f}" for f in gate.failures]
            + [f"- UNDECIDED {u}" for u in gate.undecided])


def footprint_rows(report: Report, run: CandidateRun) -> list[list]:
    base, c = report.baseline_run, run.comparison
    rows = [["file MB", _fmt(base.artifact.file_mb, ".1f"), _fmt(run.artifact.file_mb, ".1f"),
             _fmt(c.file_mb_ratio, ".3f")],
            ["parameters", _fmt(base.artifact.parameters, ","), _fmt(run.artifact.parameters, ","),
             _fmt(c.parameters_ratio, ".3f")]]
    memory = c.memory
    if memory:
        rows.append(["peak RSS MB (whole process)", _fmt(memory.baseline_mb, ".0f"), _fmt(memory.candidate_mb, ".0f"),
                     _fmt(memory.ratio, ".3f")])
        rows.append(["RSS added by load + run, MB", _fmt(memory.baseline_model_mb, ".0f"),
                     _fmt(memory.candidate_model_mb, ".0f"), _fmt(memory.model_ratio, ".3f")])
    return rows


def to_markdown(report: Report) -> str:
    env, base = report.environment, report.baseline_run
    lines = [f"# Verification: {report.artifact}", "",
             f"Baseline `{report.baseline}` on {base.backend}. Measured {env.date} on {env.cpu} "
             f"({env.cores} cores, {env.threads} thread(s)); limit {report.settings.limit} "
             f"questions per task.", ""]
    if report.baseline_cached:
        lines[-1:-1] = ["", f"The baseline's accuracy and memory figures are from the cache (measured "
                            f"{report.baseline_cached} on the same bytes and settings); speed and parity were "
                            "measured in this run."]
    for run in report.candidates:
        parity = run.parity
        lines += [f"## {run.backend}", "",
                  f"Parity vs baseline on {parity.tokens} tokens of fixed text: top-1 agreement "
                  f"{parity.top1_agreement:.3f}, mean KL {parity.kl_mean:.4g} nats (max {parity.kl_max:.3g}).",
                  "", "### Accuracy", ""]
        lines += table(["task", "metric", "n", "baseline", "candidate", "delta", "chance"], task_rows(run))
        mean = run.comparison.mean_accuracy
        lines += ["", f"Mean: baseline {_fmt(mean.baseline, '.3f')}, candidate {_fmt(mean.candidate, '.3f')}, "
                      f"delta {_fmt(mean.delta, '+.3f')}.", "", "### Perplexity", ""]
        lines += table(["distribution", "baseline", "candidate", "ratio"], perplexity_rows(run))
        if run.speed:
            lines += ["", speed_heading(run), ""]
            lines += table(["figure", "baseline", "candidate", "ratio median [interval] (pairs)", "min", "max"],
                           speed_rows(run))
        lines += ["", "### Size and memory", ""]
        lines += table(["figure", "baseline", "candidate", "ratio"], footprint_rows(report, run))
        lines.append("")
    if report.gate is not None:
        lines += ["## Gate", ""] + gate_lines(report) + [""]
    return "\n".join(lines)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(ax, labels, baseline, candidate, title, candidate_label):
    import numpy as np

    x = np.arange(len(labels))
    ax.bar(x - 0.2, baseline, 0.4, label="baseline")
    ax.bar(x + 0.2, candidate, 0.4, label=candidate_label)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend()


def plots(report: Report) -> list[str]:
    """Base64 PNGs: accuracy per task, perplexity per distribution, speed (with intervals) and memory ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for run in report.candidates:
        c = run.comparison
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        _bars(axes[0], list(c.tasks), [r.baseline for r in c.tasks.values()],
              [r.candidate for r in c.tasks.values()], "accuracy per task", run.backend)
        axes[0].scatter(range(len(c.tasks)), [r.chance for r in c.tasks.values()], marker="_", s=300,
                        color="k", label="chance")
        _bars(axes[1], list(c.perplexity), [r.baseline for r in c.perplexity.values()],
              [r.candidate for r in c.perplexity.values()], "perplexity per distribution", run.backend)
        bars = [(f"{k} (median)", r.median, r.interval) for k, r in (run.speed.ratio.items() if run.speed else ())]
        if c.memory:
            bars.append(("peak RSS", c.memory.ratio, None))
        if c.file_mb_ratio:
            bars.append(("file size", c.file_mb_ratio, None))
        xerr = [[max(v - i[0], 0) if i else 0 for _, v, i in bars], [max(i[1] - v, 0) if i else 0 for _, v, i in bars]]
        axes[2].barh([b[0] for b in bars], [b[1] for b in bars], xerr=xerr if bars else None, capsize=3)
        axes[2].axvline(1.0, color="k", linewidth=1)
        axes[2].set_title("candidate / baseline")
        images.append(_png(fig))
        plt.close(fig)
    return images


def to_html(report: Report, markdown: str) -> str:
    images = "".join(f'<img alt="plots" src="data:image/png;base64,{b64}"/>' for b64 in plots(report))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>gprune-edge verify</title>"
            f"<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}</style>"
            f"</head><body>{images}<pre>{html.escape(markdown)}</pre></body></html>")


def write_report(report: Report, out: Path) -> None:
    """report.json (Report.to_dict), report.md and report.html in the directory `out`."""
    out = Path(out)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    markdown = to_markdown(report)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(to_html(report, markdown))
