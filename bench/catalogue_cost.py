"""Prune and export every catalogue shape the adapters support, with random weights, the real
widths and vocabulary, cut to a few layers: wall time and peak RSS of `prune` and whether the
GGUF loads in llama.cpp (gprune_edge.export checks it there against torch). One JSON line per shape.

    python bench/catalogue_cost.py --layers 2 --out bench/results/catalogue_cost.jsonl

Each shape is written to disk in bf16 with SmolLM2's tokenizer (a vocabulary smaller than its
49,152 tokens, Mistral's, grows to it),
then pruned by GPrune at 20% with reconstruction in a fresh process (calibration: 8 windows of
128 tokens per source, empty cache), then exported as f16 GGUF. Qwen3 and Gemma 3 are pruned in the
stock layout (PruneRecipe.stock_layout: uniform widths, no added biases): llama.cpp has no per-layer
architecture with q/k norms. (The qwen3-0.6b row predates that: uniform, no reconstruction.)"""

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
import json, sys, time
t = time.perf_counter()
from edgecore.run_context import RunContext
from gprune.prune import prune
from gprune.recipe import PruneRecipe
recipe = PruneRecipe.from_dict(json.loads(sys.argv[1]))
result = prune(recipe, sys.argv[2], context=RunContext(threads=int(sys.argv[3]), calib_cache=sys.argv[4]))
# VmHWM, not ru_maxrss: Linux carries the parent's peak into a forked child's ru_maxrss across exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"prune_s": round(time.perf_counter() - t, 1), "sparsity": round(result.sparsity, 4),
                  "peak_rss_mb": round(hwm / 1024)}))
"""


def write_shape(name: str, layers: int, path: Path) -> dict:
    import torch

    from edgecore.catalogue import CATALOGUE, random_model
    from edgecore.checkpoint import save_checkpoint
    from edgecore.loading import builtin_hf_dir, load_model

    _, tokenizer = load_model(str(builtin_hf_dir()))
    vocab = max(CATALOGUE[name].fields["vocab_size"], len(tokenizer))  # Mistral's 32,768 < SmolLM2's 49,152
    model = random_model(name, layers=layers, vocab=vocab, dtype=torch.bfloat16)
    save_checkpoint(model, tokenizer, path)
    return {"vocab": vocab, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "disk_mb": round(sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e6)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated shape names")
    ap.add_argument("--out", required=True, help="JSON-lines results (with --write: the model folder)")
    ap.add_argument("--write", metavar="SHAPE", help=argparse.SUPPRESS)  # the child that writes one shape
    args = ap.parse_args()
    if args.write:
        print(json.dumps(write_shape(args.write, args.layers, Path(args.out))))
        return
    from edgecore.catalogue import CATALOGUE
    from edgecore.families import FAMILIES
    from gprune.recipe import PruneRecipe
    from gprune_edge.export import export

    names = args.only.split(",") if args.only else [n for n, s in CATALOGUE.items() if s.model_type in FAMILIES]
    for name in names:
        recipe = PruneRecipe(sparsity=0.2, n_samples=8, seq_len=128)
        if not FAMILIES[CATALOGUE[name].model_type].gguf_per_layer:
            recipe = recipe.stock_layout()
        recipe = recipe.to_dict()
        with tempfile.TemporaryDirectory(prefix="catalogue-") as tmp:
            tmp = Path(tmp)
            # in a child, so that the parent stays small
            written = subprocess.run([sys.executable, __file__, "--write", name, "--layers", str(args.layers),
                                      "--out", str(tmp / "dense")], capture_output=True, text=True, check=True)
            row = {"shape": name, "layers": args.layers, **json.loads(written.stdout.strip().splitlines()[-1])}
            recipe["model"] = str(tmp / "dense")
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(recipe), str(tmp / "pruned"),
                                   str(args.threads), str(tmp / "calib")], capture_output=True, text=True)
            if done.returncode:
                lines = [line for line in done.stderr.strip().splitlines() if "%|" not in line]  # not progress bars
                row["error"] = f"exit {done.returncode}: " + (lines or ["no message (killed?)"])[-1]
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
