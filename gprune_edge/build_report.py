"""The build's own report: every candidate measured, on one page.

frontier.png plots accuracy (perplexity ratio to the reference, geometric mean over the
distributions) against size and against measured decode speedup, the dense model quantized
and the pruned models in one plot, the shipped artifact marked and the budgets drawn;
report.md holds the same as a table and report.html both in one file. `summary_table` is
the short table the terminal ends with."""

from __future__ import annotations

import base64
import html

from edgecore.outputs import write_atomic
from gprune_edge.budgets import MB
from gprune_edge.candidates import interval_text
from runtime_checks.report import table

HEADER = ["artifact", "size MB", "memory MB", "decode tok/s", "decode ratio", "perplexity ratio",
          "zero-shot change", "verdict"]


def _rows(result) -> list[list[str]]:
    rows = []
    for c in result.candidates:
        ppl = "-" if c.perplexity_ratio is None else f"{c.perplexity_ratio:.3f} (worst {c.max_perplexity_ratio:.3f})"
        acc = "-" if c.accuracy_delta is None else f"{c.accuracy_delta:+.3f}"
        size = "-" if c.size_bytes is None else f"{c.size_bytes / MB:.1f}" + ("" if c.artifact else " (predicted)")
        memory = "-" if c.memory_mb is None else f"{c.memory_mb:.0f}"
        rows.append([c.label, size, memory, interval_text(c.decode_tok_s, ".1f"),
                     interval_text(c.decode_speedup, ".2f"), ppl, acc, c.verdict])
    return rows


def summary_table(result) -> str:
    return "\n".join(table(HEADER, _rows(result)))


def _panels(result) -> list[tuple]:
    """(x figure of a candidate: a number or an interval dict, axis label, budget line) per panel:
    size, memory when measured, decode speed (tok/s under a tok/s floor, else the ratio) when timed."""
    budgets, measured = result.budgets, [c for c in result.candidates if c.measured]
    panels = [(lambda c: c.size_bytes / MB, "artifact size (MB)", budgets.max_size_mb)]
    if any(c.memory_mb is not None for c in measured):
        panels.append((lambda c: c.memory_mb, "memory at the target's context (MB)", budgets.max_memory_mb))
    if budgets.min_decode_tok_s is not None and any(c.decode_tok_s for c in measured):
        panels.append((lambda c: c.decode_tok_s, "decode tok/s (95% interval)", budgets.min_decode_tok_s))
    elif any(c.decode_speedup for c in measured):
        panels.append((lambda c: c.decode_speedup, "decode speedup over the reference (x)", budgets.min_decode_speedup))
    return panels


def _frontier_png(result) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [c for c in result.candidates if c.measured and c.size_bytes]
    panels = _panels(result)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    dtypes = sorted({c.dtype for c in measured})
    colors = {d: plt.cm.tab10(i) for i, d in enumerate(dtypes)}
    shipped = {a.artifact for a in result.artifacts}
    for ax, (figure, xlabel, budget) in zip(axes[0], panels):
        for c in measured:
            x = figure(c)
            if x is None:
                continue
            y = c.perplexity_ratio
            if isinstance(x, dict):  # a timed figure: its median, with its confidence interval
                if x["low"] is not None:
                    ax.errorbar(x["median"], y, xerr=[[x["median"] - x["low"]], [x["high"] - x["median"]]],
                                color=colors[c.dtype], capsize=3, linewidth=1)
                x = x["median"]
            ax.scatter(x, y, color=colors[c.dtype], marker="o" if c.sparsity == 0 else "s", s=40)
            ax.annotate(f"{c.sparsity:.0%}" if c.sparsity else "dense", (x, y), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
            if c.artifact in shipped:
                ax.scatter(x, y, s=260, facecolors="none", edgecolors="k", linewidths=1.5)
        if budget is not None:
            ax.axvline(budget, color="r", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("perplexity ratio (geo-mean)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[d], marker="s", linestyle="", label=d) for d in dtypes]
    handles += [plt.Line2D([], [], color="gray", marker=m, linestyle="", label=lab)
                for m, lab in (("o", "dense"), ("s", "pruned"))]
    handles.append(plt.Line2D([], [], color="k", marker="o", markerfacecolor="none", linestyle="", markersize=12,
                              label="shipped"))
    axes[0][0].legend(handles=handles, fontsize=8)
    fig.suptitle(f"{result.target.name}: every candidate measured (red dashes: the device's budgets)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def to_markdown(result) -> str:
    lines = [f"# Build for {result.target.name}", "", f"Verdict: **{result.verdict}**. Every artifact was "
             f"measured on {result.runtime}, against the dense model on the same runtime."]
    if result.note:
        lines += ["", result.note[0].upper() + result.note[1:] + "."]
    lines += ["", f"Budgets: {result.budgets.limits()}; ratios are to {result.candidates[0].label}, "
                  "measured on the quick tier (perplexity on short windows); the shipped artifact's full "
                  "report is linked below."]
    lines += ["", "![frontier](frontier.png)", ""] + table(HEADER, _rows(result)) + [""]
    for a in result.artifacts:
        lines += [f"- `{a.artifact}`: gate {a.gate.verdict}; report [{a.report}]({a.report})"]
        lines += [f"  - {line}" for line in a.budgets]
    return "\n".join(lines) + "\n"


def write_build_report(result) -> None:
    """frontier.png, report.md and report.html in the build folder."""
    png = _frontier_png(result)
    markdown = to_markdown(result)
    write_atomic(result.out / "frontier.png", png)
    write_atomic(result.out / "report.md", markdown)
    image = base64.b64encode(png).decode("ascii")
    write_atomic(result.out / "report.html", (
        f"<!doctype html><html><head><meta charset='utf-8'><title>gprune-edge build</title>"
        f"<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}</style></head>"
        f"<body><img alt='frontier' src='data:image/png;base64,{image}'/><pre>{html.escape(markdown)}</pre>"
        f"</body></html>"))
