"""Every ONNX precision of dense and pruned SmolLM2-135M on onnxruntime-web (WASM in Node) and on
native onnxruntime, 1 thread each: size, parity against the torch model (top-1 agreement and KL on a
fixed text), decode tok/s with the pruned model timed in alternating pairs against the dense model of the
same precision on the same backend, load time and peak RSS of a fresh process. Usage:

    python bench/onnx_web.py --model dense=DIR --model g20=DIR --model g35=DIR \
        --work runs/onnx-web --out bench/results/onnx_web.json

The first --model is the dense baseline; exports are kept in --work and reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from exporters import ONNX_DTYPES, load_source
from gprune_edge.export import export
from runtime_checks.backends import load_backend
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.memory import peak_rss
from runtime_checks.parity import compare_logits
from runtime_checks.settings import SpeedSettings
from runtime_checks.speed import compare_speed
from runtime_checks.verify import fixed_text_ids

BACKENDS = ("onnxruntime-web", "onnxruntime")
SPEED = SpeedSettings(pairs=5, max_pairs=9, prefill_tokens=64, prompt_tokens=32, decode_tokens=16, threads=1,
                      max_seconds=240)


def _artifact(work: Path, label: str, model_dir: str, dtype: str) -> Path:
    out = work / f"{label}-{dtype}"
    if not (out / "model.onnx").exists():
        export(model_dir, "onnx", dtype, out, threads=2, parity="warn", overwrite=True)
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("model.onnx*"))


@click.command()
@click.option("--model", "models", multiple=True, required=True, help="LABEL=DIR; the first is the dense baseline.")
@click.option("--dtype", "dtypes", default=",".join(ONNX_DTYPES), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(models, dtypes, work, out):
    models = [m.split("=", 1) for m in models]
    dense_label = models[0][0]
    results = json.loads(out.read_text()) if out.exists() else []
    done = {(r["model"], r["dtype"], r["backend"]) for r in results}
    for label, model_dir in models:
        source = load_source(model_dir)
        ids = fixed_text_ids(source.tokenizer, 256)
        reference = TorchBackend.from_model(source.model, source.tokenizer).logits(ids[:128])
        for dtype in dtypes.split(","):
            path = _artifact(work, label, model_dir, dtype)
            base_path = _artifact(work, dense_label, models[0][1], dtype)
            for backend in BACKENDS:
                if (label, dtype, backend) in done:
                    continue
                started = time.perf_counter()
                with load_backend(backend, path, threads=1) as cand:
                    load_s = time.perf_counter() - started
                    parity = compare_logits(reference, cand.logits(ids[:128]), ids[:128])
                    if label == dense_label:
                        cand.generate(ids[:32], 4)
                        runs = sorted(cand.generate(ids[:32], 16).decode_tok_s for _ in range(5))
                        speed = {"decode_tok_s": runs[2]}
                    else:
                        with load_backend(backend, base_path, threads=1) as base:
                            cmp = compare_speed(cand, base, ids, SPEED)
                        r = cmp.ratio["decode_tok_s"]
                        speed = {"decode_tok_s": cmp.candidate.decode_tok_s, "dense_decode_tok_s":
                                 cmp.baseline.decode_tok_s, "decode_ratio": r.median, "low": r.low, "high": r.high,
                                 "pairs": len(r.pairs)}
                memory = peak_rss(path, backend, threads=1)
                row = {"model": label, "dtype": dtype, "backend": backend, "size_mb": _size(path) / 1e6,
                       "top1": parity.top1_agreement, "kl": parity.kl_mean, "load_s": load_s,
                       "peak_rss_mb": memory.peak_rss_mb, **speed}
                print(json.dumps(row), flush=True)
                results.append(row)
                out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
