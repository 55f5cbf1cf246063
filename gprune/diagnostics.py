"""A picture of a pruning run: per-layer kept share of FFN and attention, and (for
GPrune) the histogram of distribution sensitivity. Saved next to the checkpoint."""

from __future__ import annotations

import io

PLOT_FILE = "prune_plot.png"


def render_plot(summary: dict) -> bytes:
    """The plot as PNG bytes (the caller writes it with the rest of the output)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    layers = summary["diagnostics"].get("layers") or []
    hist = summary["diagnostics"].get("sensitivity_histogram")
    fig, axes = plt.subplots(1, 2 if hist else 1, figsize=(11 if hist else 6, 3.5), squeeze=False)
    ax = axes[0][0]
    if layers:
        idx = [d["layer"] for d in layers]
        ax.bar([i - 0.2 for i in idx], [d["ffn_sparsity"] for d in layers], width=0.4, label="FFN")
        ax.bar([i + 0.2 for i in idx], [d["kv_sparsity"] for d in layers], width=0.4, label="KV groups")
        ax.legend()
    ax.set(xlabel="layer", ylabel="sparsity", title=f"sparsity {summary['sparsity_achieved']:.3f}")
    if hist:
        ax = axes[0][1]
        edges, counts = hist["edges"], hist["counts"]
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge")
        ax.set(xlabel="rank spread across datasets", ylabel="FFN neurons", title="distribution sensitivity")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    return png.getvalue()
