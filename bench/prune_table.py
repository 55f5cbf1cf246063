"""Markdown tables from bench/prune_grid.py's JSON lines.

    python bench/prune_table.py bench/results/prune_grid.jsonl"""

from __future__ import annotations

import sys

from common import ABLATIONS, CALIB, EVAL, OOD, gmean, read_jsonl


def row(r: dict) -> str:
    ratios = [r["ratio"][d] for d in EVAL]
    cells = [f"{x:.2f}" for x in ratios]
    return (f"| {r['label']} | {r['sparsity']:.2f} ({r['achieved']:.3f}) | " + " | ".join(cells)
            + f" | **{gmean([r['ratio'][d] for d in OOD]):.2f}** | {gmean([r['ratio'][d] for d in CALIB]):.2f} |")


def table(rows: list[dict]) -> str:
    head = ("| run | sparsity (achieved) | " + " | ".join(f"{d}{'*' if d in OOD else ''}" for d in EVAL)
            + " | OOD geo-mean* | in-dist geo-mean |")
    return "\n".join([head, "|" + "---|" * (len(EVAL) + 4)] + [row(r) for r in rows])


def main():
    rows = read_jsonl(sys.argv[1])
    dense = [r for r in rows if r["label"] == "dense"][-1]
    print("Dense perplexity: " + ", ".join(f"{d} {dense['ppl'][d]:.2f}" for d in EVAL) + "\n")
    runs = {}
    for r in rows:
        if r["label"] != "dense":
            runs[(r["label"], r["sparsity"])] = r  # the last run of a label wins
    main_labels = ["gprune", "gprune +recon", "flap", "flap +recon", "flap(group-sum)", "wanda-sp", "magnitude",
                   "gprune(wanda-sp)"]
    print("### GPrune vs baselines (perplexity / dense; * = not in calibration)\n")
    by_s = sorted({s for _, s in runs})
    print(table([runs[(l, s)] for s in by_s for l in main_labels if (l, s) in runs]))
    ablation_labels = {f"gprune {name}" for name in ABLATIONS}
    variants = [r for (l, s), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0]))
                if l.startswith("gprune ") and l not in ablation_labels and l not in main_labels]
    if variants:
        print("\n### Other GPrune runs\n")
        print(table(variants))
    abl = [r for (l, s), r in runs.items() if l in ablation_labels]
    if abl:
        print("\n### Ablation at 35% (each GPrune step off in turn)\n")
        print(table([runs[("gprune", 0.35)]] + abl if ("gprune", 0.35) in runs else abl))
    print("\n### Metric dependence (OOD geo-mean ratio)\n")
    print("| sparsity | wanda-sp | flap | spread | gprune(wanda-sp) | gprune(flap) | spread |")
    print("|---|---|---|---|---|---|---|")
    for s in by_s:
        flap = "flap" if ("flap", s) in runs else "flap(group-sum)"
        keys = [("wanda-sp", s), (flap, s), ("gprune(wanda-sp)", s), ("gprune", s)]
        if all(k in runs for k in keys):
            w, f, gw, gf = (gmean([runs[k]["ratio"][d] for d in OOD]) for k in keys)
            print(f"| {s:.2f} | {w:.2f} | {f:.2f} | {max(w, f) / min(w, f):.2f}x | {gw:.2f} | {gf:.2f} | "
                  f"{max(gw, gf) / min(gw, gf):.2f}x |")


if __name__ == "__main__":
    main()
