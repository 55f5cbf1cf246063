"""Prune and export every catalogue shape the adapters support, with random weights, the real
widths and vocabulary, cut to a few layers: wall time and peak RSS of `prune` and whether the
GGUF loads in llama.cpp (gprune_edge.export checks it there against torch). One JSON line per shape.

    python bench/catalogue_cost.py --layers 2 --out bench/results/catalogue_cost.jsonl

Each shape is written to disk in bf16 with SmolLM2's tokenizer (its ids fit every vocabulary),
then pruned by GPrune at 20% with reconstruction in a fresh process (calibration: 8 windows of
128 tokens per source, empty cache), then exported as f16 GGUF. Qwen3 is pruned with uniform
widths and no compensation biases: llama.cpp has no per-layer architecture with q/k norms."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import append_jsonl

CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
from edgecore.run_context import RunContext
from gprune.prune import prune
from gprune.recipe import PruneRecipe
recipe = PruneRecipe.from_dict(json.loads(sys.argv[1]))
result = prune(recipe, sys.argv[2], context=RunContext(threads=int(sys.argv[3]), calib_cache=sys.argv[4]))
print(json.dumps({"prune_s": round(time.perf_counter() - t, 1), "sparsity": round(result.sparsity, 4),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def write_shape(name: str, layers: int, path: Path) -> dict:
    import torch

    from edgecore.catalogue import random_model
    from edgecore.checkpoint import save_checkpoint
    from edgecore.loading import builtin_hf_dir, load_model

    model = random_model(name, layers=layers, dtype=torch.bfloat16)
    _, tokenizer = load_model(str(builtin_hf_dir()))
    save_checkpoint(model, tokenizer, path)
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "disk_mb": round(sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e6)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated shape names")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from edgecore.catalogue import CATALOGUE
    from edgecore.families import FAMILIES
    from gprune_edge.export import export

    names = args.only.split(",") if args.only else [n for n, s in CATALOGUE.items() if s.model_type in FAMILIES]
    for name in names:
        qk_norm = FAMILIES[CATALOGUE[name].model_type].qk_norm
        recipe = {"model": "", "sparsity": 0.2, "method": {"name": "gprune", "uniform": qk_norm,
                                                           "bias_comp": not qk_norm},
                  "reconstruct": not qk_norm, "n_samples": 8, "seq_len": 128}
        with tempfile.TemporaryDirectory(prefix="catalogue-") as tmp:
            tmp = Path(tmp)
            row = {"shape": name, "layers": args.layers, **write_shape(name, args.layers, tmp / "dense")}
            recipe["model"] = str(tmp / "dense")
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(recipe), str(tmp / "pruned"),
                                   str(args.threads), str(tmp / "calib")], capture_output=True, text=True)
            if done.returncode:
                row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
            else:
                row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                shutil.rmtree(tmp / "dense")
                try:
                    result = export(tmp / "pruned", "gguf", "f16", tmp / "pruned.gguf", parity="warn",
                                    threads=args.threads)
                    row.update(gguf_arch=result.architecture, gguf_mb=round(result.size_bytes / 1e6),
                               gguf_top1=result.parity.get("top1_agreement"),
                               gguf_generation_matches=result.generation_matches)
                except Exception as e:  # noqa: BLE001  (recorded, the next shape still runs)
                    row["gguf_error"] = str(e).splitlines()[0]
        print(json.dumps(row), flush=True)
        append_jsonl(args.out, row)


if __name__ == "__main__":
    main()
