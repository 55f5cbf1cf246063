"""Zero-shot accuracy of pruned SmolLM2-135M: GPrune vs magnitude, wanda-sp and flap (issue 4).

    python bench/prune_zeroshot.py --out bench/results/prune_zeroshot.jsonl --limit 100
    python bench/prune_zeroshot.py --out bench/results/prune_zeroshot.jsonl --table
    python bench/prune_zeroshot.py --out bench/results/recover_zeroshot.jsonl --limit 50 --saved "gprune +recon +kd24k=runs/g20-kd@0.2"

Models are pruned in memory exactly as prune_grid's main runs (align 32, seed 0, calib wiki,news,code,
16 x 256-token windows per source, read from the calibration cache) and scored with the project's
harness (runtime_checks.accuracy) on the torch backend. One JSON line per (method, sparsity) is
appended as it finishes; pairs already in the file are skipped, so a rerun resumes."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from common import BASELINES, SPARSITIES, achieved, append_jsonl, read_jsonl, recipe

from edgecore.loading import builtin_hf_dir, load_model
from gprune.prune import prune_model
from runtime_checks.accuracy import evaluate
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.tasks import CHANCE

TASKS = ["arc_easy", "piqa", "hellaswag", "lambada"]
# label -> (method, options, reconstruct); a bare method name runs without reconstruction
VARIANTS = {"flap(group-sum)": ("flap", {"attention": "group-sum"}, False), "gprune +recon": ("gprune", {}, True),
            "flap +recon": ("flap", {}, True)}
METHODS = ["dense", "gprune", *reversed(BASELINES), *VARIANTS]  # dense, gprune, flap, wanda-sp, magnitude, ...


def read_rows(path: str) -> list[dict]:
    return read_jsonl(path) if Path(path).exists() else []


def score(model, tokenizer, limit: int) -> dict:
    result = evaluate(TorchBackend("in-memory", model=model, tokenizer=tokenizer), tokenizer, TASKS, limit=limit, seed=0)
    return {t: r.to_dict() for t, r in result["tasks"].items()}


def run(args) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    done = {(r["method"], r["sparsity"]) for r in read_rows(args.out)}
    todo = [("dense", 0.0)] * ("dense" in args.methods) + [(m, s) for s in args.sparsities for m in args.methods
                                                           if m != "dense"]
    saved = dict(spec.split("=", 1) for spec in args.saved)  # label -> DIR@SPARSITY (a model saved elsewhere)
    todo += [(label, float(spec.rsplit("@", 1)[1])) for label, spec in saved.items()]
    for method, sparsity in todo:
        if (method, sparsity) in done:
            continue
        t = time.perf_counter()
        pruned = model
        if method in saved:
            pruned = load_model(saved[method].rsplit("@", 1)[0])[0]
        elif method != "dense":
            name, options, reconstruct = VARIANTS.get(method, (method, {}, False))
            pruned, _ = prune_model(model, tokenizer, recipe(name, sparsity, options, reconstruct))
        prune_s = time.perf_counter() - t
        t = time.perf_counter()
        tasks = score(pruned, tokenizer, args.limit)
        row = {"method": method, "sparsity": sparsity, "achieved": 0.0 if pruned is model else achieved(pruned, model),
               "limit": args.limit, "tasks": tasks, "prune_s": round(prune_s, 1),
               "eval_s": round(time.perf_counter() - t, 1)}
        append_jsonl(args.out, row)
        print(method, sparsity, {k: round(v["primary"], 3) for k, v in tasks.items()}, f"{row['eval_s']}s", flush=True)


def table(path: str) -> str:
    rows = read_rows(path)
    rows.sort(key=lambda r: (r["sparsity"], METHODS.index(r["method"]) if r["method"] in METHODS else -1))
    metric = {t: next(r["tasks"][t]["metric"] for r in rows) for t in TASKS}
    head = ["method", "sparsity (achieved)", *[f"{t} ({metric[t]})" for t in TASKS], "mean"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [r["tasks"][t]["primary"] for t in TASKS]
        sp = "0 (dense)" if r["method"] == "dense" else f"{r['sparsity']:.2f} ({r['achieved']:.3f})"
        out.append(f"| {r['method']} | {sp} | " + " | ".join(f"{v:.3f}" for v in vals)
                   + f" | {sum(vals) / len(vals):.3f} |")
    n = {t: rows[0]["tasks"][t]["n"] for t in TASKS}
    dense = next((r for r in rows if r["method"] == "dense"), rows[0])
    out.append("| chance | | " + " | ".join(f"{CHANCE[t]:.2f}" for t in TASKS)
               + f" | {sum(CHANCE[t] for t in TASKS) / len(TASKS):.3f} |")
    # binomial SE: at the dense accuracy, and the largest possible (p = 0.5)
    out.append("| stderr (dense p) | | " + " | ".join(f"{dense['tasks'][t]['stderr']:.3f}" for t in TASKS) + " | |")
    out.append("| stderr (max, p=.5) | | " + " | ".join(f"{math.sqrt(0.25 / max(n[t] - 1, 1)):.3f}" for t in TASKS)
               + " | |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="jsonl to append to (and to read for --table / resume)")
    ap.add_argument("--limit", type=int, default=100, help="questions per task (fixed seed 0)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated; 'dense' = the unpruned model")
    ap.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--saved", action="append", default=[], help="LABEL=DIR@SPARSITY: also score a saved model")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return
    args.methods = args.methods.split(",")
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    run(args)


if __name__ == "__main__":
    main()
