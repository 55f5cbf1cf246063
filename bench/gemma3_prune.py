"""Gemma 3 270M, real weights (issue 23): GPrune and FLAP at 20 / 35 / 50% with reconstruction
against the dense model; perplexity on every evaluation distribution (science, dialogue and boolq
are out of calibration) and zero-shot accuracy.

    python bench/gemma3_prune.py --out bench/results/gemma3_prune.jsonl
    python bench/gemma3_prune.py --out bench/results/gemma3_prune.jsonl --table

Pruned in memory with the benchmarks' recipe (bench/common.py: align 32, seed 0, calib wiki,news,code)
with 8 x 256-token windows per source (half the SmolLM2 benches', for this machine's time) on the
built-in gemma3-270m; scored on the torch backend with the
project's harness. One JSON line per run is appended as it finishes; runs already in the file are
skipped, so a rerun resumes. A run is METHOD:SPARSITY[:stock]; `stock` prunes in the stock layout
(PruneRecipe.stock_layout: uniform widths, no added biases), what `build` ships for a GGUF target.

    python bench/gemma3_prune.py --out bench/results/gemma3_prune.jsonl --runs gprune:0.2:stock,gprune:0.35:stock"""

from __future__ import annotations

import argparse
import time

import torch
from common import EVAL, OOD, achieved, append_jsonl, eval_sets, gmean, perplexity, read_jsonl, recipe

from edgecore.loading import GEMMA3_270M, builtin_hf_dir, load_model
from gprune.prune import prune_model
from runtime_checks.accuracy import evaluate
from runtime_checks.backends.torch_backend import TorchBackend

TASKS = ["arc_easy", "piqa", "hellaswag", "lambada"]
RUNS = ["dense"] + [f"{m}:{s}" for s in (0.2, 0.35, 0.5) for m in ("gprune", "flap")]


def measure(model, tokenizer, evals, limit: int) -> dict:
    ppl = {d: round(perplexity(model, w), 4) for d, w in evals.items()}
    tasks = evaluate(TorchBackend("in-memory", model=model, tokenizer=tokenizer), tokenizer, TASKS, limit=limit)
    return {"perplexity": ppl, "tasks": {t: round(r.primary, 4) for t, r in tasks["tasks"].items()}}


def run(args) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir(GEMMA3_270M)))
    evals = eval_sets(tokenizer, args.windows)
    done = {r["run"] for r in read_jsonl(args.out)} if args.out.exists() else set()
    for spec in args.runs:
        if spec in done:
            continue
        t = time.perf_counter()
        pruned, row = model, {"run": spec, "method": "dense", "sparsity": 0.0}
        if spec != "dense":
            method, sparsity, *layout = spec.split(":")
            pruning = recipe(method, float(sparsity), reconstruct=True, model=GEMMA3_270M, n_samples=8)
            if layout == ["stock"]:
                pruning = pruning.stock_layout()
            pruned, _ = prune_model(model, tokenizer, pruning)
            row = {"run": spec, "method": method, "sparsity": float(sparsity), "achieved": achieved(pruned, model)}
        row["prune_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        row.update(measure(pruned, tokenizer, evals, args.limit), eval_s=round(time.perf_counter() - t, 1),
                   windows=args.windows, limit=args.limit)
        append_jsonl(args.out, row)
        print(spec, row["perplexity"], row["tasks"], f"{row['prune_s']}s + {row['eval_s']}s", flush=True)


def table(path) -> str:
    rows = sorted(read_jsonl(path), key=lambda r: (r["sparsity"], r["run"]))
    dense = next(r for r in rows if r["run"] == "dense")
    head = ["run", "achieved", *[f"{d} ppl" for d in EVAL], "OOD ppl / dense (gmean)", *TASKS, "mean acc"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = gmean(r["perplexity"][d] / dense["perplexity"][d] for d in OOD)
        acc = [r["tasks"][t] for t in TASKS]
        out.append("| " + " | ".join([r["run"], f"{r.get('achieved', 0):.3f}",
                                      *[f"{r['perplexity'][d]:.2f}" for d in EVAL], f"{ratio:.2f}x",
                                      *[f"{a:.2f}" for a in acc], f"{sum(acc) / len(acc):.3f}"]) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=lambda p: __import__("pathlib").Path(p), default="bench/results/gemma3_prune.jsonl")
    ap.add_argument("--runs", type=lambda s: s.split(","), default=RUNS)
    ap.add_argument("--windows", type=int, default=8, help="eval windows of 256 tokens per distribution")
    ap.add_argument("--limit", type=int, default=50, help="questions per zero-shot task")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    print(table(args.out)) if args.table else run(args)


if __name__ == "__main__":
    main()
