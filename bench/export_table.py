"""Markdown tables from bench/export_smollm2.py's JSON: python bench/export_table.py results.json"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows = json.load(open(path))
    dense = {(r["format"], r["dtype"]): r for r in rows if r["model"] == "dense"}
    print("| model | artifact | arch | export s | size MB | size vs dense | weight bytes/token MB | decode bound "
          "(dense bytes / bytes) | top-1 | mean KL | max abs dlogit | mean abs dlogit | ppl ratio | greedy = torch "
          "| fallback tensors |")
    print("|" + "---|" * 15)
    for r in rows:
        d, p = dense[(r["format"], r["dtype"])], r["parity"]
        greedy = f"{sum(r['greedy_match'])}/{len(r['greedy_match'])}" if r["greedy_match"] else "-"
        print(f"| {r['model']} | {r['format']} {r['dtype']} | {r['arch']} | {r['export_s']:.1f} | "
              f"{r['size_bytes'] / 1e6:.1f} | {r['size_bytes'] / d['size_bytes']:.3f} | "
              f"{r['bytes_per_token'] / 1e6:.1f} | {d['bytes_per_token'] / r['bytes_per_token']:.2f}x | "
              f"{p['top1_agreement']:.3f} | {p['kl_mean']:.2e} | {p['max_abs_logit_diff']:.2f} | "
              f"{p['mean_abs_logit_diff']:.3f} | {p['ppl_ratio']:.3f} | {greedy} | {r['fallbacks']} |")


if __name__ == "__main__":
    main(sys.argv[1])
