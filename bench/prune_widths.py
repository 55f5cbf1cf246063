"""Per-layer widths of pruned models from bench/prune_grid.py's JSON lines: FFN neurons and KV
groups kept in every layer, one line per run.

    python bench/prune_widths.py bench/results/prune_grid_issue14.jsonl --sparsity 0.2 \\
        --labels "flap,flap(group-sum),gprune" --out widths_20pct.png"""

from __future__ import annotations

import argparse

import matplotlib
from common import OOD, gmean, read_jsonl

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", nargs="+", help="prune_grid.py JSON-lines files")
    ap.add_argument("--sparsity", type=float, required=True)
    ap.add_argument("--labels", required=True, help="comma-separated run labels")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = {}
    for r in (r for path in args.grids for r in read_jsonl(path)):
        if r.get("sparsity") == args.sparsity and "layers_ffn" in r:
            runs[r["label"]] = r  # the last run of a label wins
    labels = [label for label in args.labels.split(",") if label in runs]
    fig, (ffn, kv) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for label in labels:
        r = runs[label]
        layers = range(len(r["layers_ffn"]))
        ood = gmean(r["ratio"][d] for d in OOD)
        ffn.plot(layers, r["layers_ffn"], marker="o", ms=3, label=f"{label} (OOD x{ood:.2f})")
        kv.plot(layers, r["layers_kv"], marker="o", ms=3, label=label)
    ffn.set(ylabel="FFN neurons kept", title=f"SmolLM2-135M pruned to {args.sparsity:.0%}: widths per layer")
    kv.set(ylabel="KV groups kept", xlabel="layer", yticks=[0, 1, 2, 3])
    ffn.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out} ({', '.join(labels)})")


if __name__ == "__main__":
    main()
