"""Decode speed of each ONNX precision of one model relative to its fp32 export, timed in alternating
pairs on the same backend (1 thread): which precision is fast on which runtime. Uses the exports
bench/onnx_web.py keeps in --work. Usage:

    python bench/onnx_precisions.py --work runs/onnx-web --label dense --out bench/results/onnx_precisions.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from runtime_checks.backends import load_backend
from runtime_checks.settings import SpeedSettings
from runtime_checks.speed import compare_speed

SPEED = SpeedSettings(pairs=5, max_pairs=7, prefill_tokens=64, prompt_tokens=32, decode_tokens=16, threads=1,
                      max_seconds=120)
PROMPT = [3 + (7 * i) % 49000 for i in range(64)]  # any valid ids: speed does not depend on the text


@click.command()
@click.option("--work", type=click.Path(path_type=Path), required=True)
@click.option("--label", default="dense", show_default=True)
@click.option("--dtype", "dtypes", default="fp16,int8,int4,int8-dq,int4-dq,dynamic-int8", show_default=True)
@click.option("--backend", "backends", default="onnxruntime-web,onnxruntime", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(work, label, dtypes, backends, out):
    rows = []
    for backend in backends.split(","):
        with load_backend(backend, work / f"{label}-fp32", threads=1) as fp32:
            for dtype in dtypes.split(","):
                with load_backend(backend, work / f"{label}-{dtype}", threads=1) as cand:
                    r = compare_speed(cand, fp32, PROMPT, SPEED)
                row = {"backend": backend, "dtype": dtype, "decode_tok_s": r.candidate.decode_tok_s,
                       "fp32_decode_tok_s": r.baseline.decode_tok_s,
                       **{f"{k}_ratio": v.median for k, v in r.ratio.items()},
                       "decode_low": r.ratio["decode_tok_s"].low, "decode_high": r.ratio["decode_tok_s"].high,
                       "pairs": len(r.ratio["decode_tok_s"].pairs)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
