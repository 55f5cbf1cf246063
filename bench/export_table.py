"""Markdown table from bench/export_smollm2.py's JSON: python bench/export_table.py results.json

decode bound = dense weight bytes read per token / this artifact's (same format and dtype): the most a
memory-bound decode can speed up."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows = json.load(open(path))
    dense = {(r["format"], r["dtype"]): r for r in rows if r["model"] == "dense"}
    print("| model | artifact | arch | export s | size MB | vs dense | decode bound | top-1 | mean KL | ppl ratio "
          "| greedy = torch | fallbacks |")
    print("|" + "---|" * 12)
    for r in rows:
        d, p = dense[(r["format"], r["dtype"])], r["parity"]
        greedy = f"{sum(r['greedy_match'])}/{len(r['greedy_match'])}" if r["greedy_match"] else "-"
        print(f"| {r['model']} | {r['format']} {r['dtype']} | {r['arch']} | {r['export_s']:.1f} | "
              f"{r['size_bytes'] / 1e6:.1f} | {r['size_bytes'] / d['size_bytes']:.2f} | "
              f"{d['bytes_per_token'] / r['bytes_per_token']:.2f}x | {p['top1_agreement']:.3f} | {p['kl_mean']:.1e} | "
              f"{p['ppl_ratio']:.3f} | {greedy} | {r['fallbacks']} |")


if __name__ == "__main__":
    main(sys.argv[1])
