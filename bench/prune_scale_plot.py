"""Plot bench/prune_scale.py's records: wall time and peak RSS against model size (at a fixed calibration),
and wall time against calibration tokens (one shape). Prints the table BENCHMARKS.md holds.

    python bench/prune_scale_plot.py bench/results/prune_scale.jsonl bench/results/prune_scale.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(records_file: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(records_file).read_text().splitlines() if line.strip()]
    one = [r for r in records if r.get("processes", 1) == 1]
    base = min(r["n_samples"] for r in one)
    by_size = sorted((r for r in one if r["n_samples"] == base), key=lambda r: r["checkpoint_mb"])
    sweep_shape = max({r["shape"] for r in one}, key=lambda s: sum(r["shape"] == s for r in one))
    by_tokens = sorted((r for r in one if r["shape"] == sweep_shape), key=lambda r: r["calibration_tokens"])

    print("| shape | layers | checkpoint (bf16) | calibration tokens | processes | wall | planning | writing "
          "(reconstruction) | peak RSS | GGUF q4_k_m export: wall, peak RSS, size |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: (r["checkpoint_mb"], r["calibration_tokens"], r.get("processes", 1))):
        export = (f"{r['export_wall_s']:.0f} s, {r['export_peak_rss_mb'] / 1024:.2f} GB, {r['gguf_mb'] / 1024:.2f} GB"
                  if "export_wall_s" in r else "-")
        print(f"| {r['shape']} | {r['layers']} | {r['checkpoint_mb'] / 1024:.2f} GB | {r['calibration_tokens']} | "
              f"{r.get('processes', 1)} | {r['wall_s']:.0f} s | {r['planning_s']:.0f} s | {r['writing_s']:.0f} s "
              f"({r['reconstruction_s']:.0f} s) | {r['peak_rss_mb'] / 1024:.2f} GB | {export} |")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    gb = [r["checkpoint_mb"] / 1024 for r in by_size]
    axes[0].plot(gb, [r["wall_s"] / 60 for r in by_size], "o-")
    axes[0].set(xlabel="checkpoint (GB, bf16)", ylabel="wall time (min)",
                title=f"prune 20% + reconstruction, {by_size[0]['calibration_tokens']} calibration tokens")
    axes[1].plot(gb, [r["peak_rss_mb"] / 1024 for r in by_size], "o-", label="prune")
    exported = [(x, r["export_peak_rss_mb"] / 1024) for x, r in zip(gb, by_size) if "export_peak_rss_mb" in r]
    if exported:
        axes[1].plot(*zip(*exported), "s--", label="export (GGUF q4_k_m, parity check)")
    axes[1].axhline(4, color="grey", ls="--", label="goal: 4 GB")
    axes[1].set(xlabel="checkpoint (GB, bf16)", ylabel="peak RSS (GB)", title="peak memory", ylim=(0, None))
    axes[1].legend()
    for r, x, y in zip(by_size, gb, [r["peak_rss_mb"] / 1024 for r in by_size]):
        axes[1].annotate(r["shape"], (x, y), fontsize=8)
    axes[2].plot([r["calibration_tokens"] for r in by_tokens], [r["wall_s"] for r in by_tokens], "o-")
    axes[2].set(xlabel="calibration tokens (3 sources)", ylabel="wall time (s)", title=f"{sweep_shape}",
                ylim=(0, None))
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
