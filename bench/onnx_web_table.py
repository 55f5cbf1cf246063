"""Markdown tables from bench/onnx_web.py's JSON: per precision, for each backend, size, parity with
torch, dense decode tok/s and the pruned models' decode ratio to the dense model of the same precision.

    python bench/onnx_web_table.py bench/results/onnx_web.json
"""

import json
import sys

with open(sys.argv[1]) as f:
    rows = json.load(f)
by = {(r["model"], r["dtype"], r["backend"]): r for r in rows}
models = list(dict.fromkeys(r["model"] for r in rows))
dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
for backend in ("onnxruntime-web", "onnxruntime"):
    print(f"\n{backend} (1 thread)\n")
    names = " / ".join(models)
    head = ["precision", f"size MB ({names})", f"top-1 vs torch ({names})", f"KL vs torch ({names})",
            f"{models[0]} decode tok/s"] + [f"{m} decode ratio [95% CI]" for m in models[1:]] + ["peak RSS MB (dense)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for dtype in dtypes:
        dense = by.get((models[0], dtype, backend))
        if dense is None:
            continue
        present = [by[(m, dtype, backend)] for m in models if (m, dtype, backend) in by]
        cells = [dtype, " / ".join(f"{r['size_mb']:.0f}" for r in present),
                 " / ".join(f"{r['top1']:.2f}" for r in present), " / ".join(f"{r['kl']:.3f}" for r in present),
                 f"{dense['decode_tok_s']:.1f}"]
        for m in models[1:]:
            r = by.get((m, dtype, backend))
            cells.append("-" if r is None else f"{r['decode_ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                         if r.get("low") is not None else f"{r['decode_ratio']:.2f}")
        cells.append(f"{dense['peak_rss_mb']:.0f}")
        print("| " + " | ".join(cells) + " |")
