"""Recovery tiers on SmolLM2-135M: perplexity ratio to dense per distribution after pruning
(GPrune), + reconstruction, + distillation from the dense model, at several token counts.

    python bench/recover_curve.py --sparsity 0.2 --tokens 2k,8k,24k --out bench/results/recover_curve.jsonl
    python bench/recover_curve.py --sparsity 0.2 --tokens 6k,12k,24k --data self --out bench/results/recover_curve_data.jsonl
    python bench/recover_curve.py --plot bench/results/recover_curve.jsonl --png bench/results/recover_curve.png
    python bench/recover_curve.py --device cuda --sparsity 0.2 --tokens 1M,2.5M,5M,10M --seq-len 512 --threads 16 ...

Pruning and distillation run on --device (auto: CUDA when present); perplexities on the model's
device (the student's where it trains; the dense and pruned models stay on the CPU).

One distillation run is made with the largest budget; the smaller budgets are its state after
that many tokens (same run, so the learning-rate schedule is the largest budget's: a run
budgeted for fewer tokens would decay sooner). Every point appends a JSON line: tier, tokens,
perplexity per distribution and ratio to dense, wall time so far."""

from __future__ import annotations

import argparse
import json
import time

from common import CALIB, OOD, append_jsonl, eval_sets, gmean, perplexity, read_jsonl, recipe
from transformers import TrainerCallback

from edgecore.checkpoint import save_checkpoint
from edgecore.loading import builtin_hf_dir, load_model
from edgecore.run_context import RunContext
from gprune.prune import prune_model
from gprune.recipe import RECIPE_FILE
from gprune_edge.cli.config_options import parse_tokens
from recovery.config import DistillConfig
from recovery.distill import distill_model


class EvaluateAt(TrainerCallback):
    """Evaluate the student when the run has seen each of `budgets` tokens."""

    def __init__(self, budgets: list[int], tokens_per_step: int, record):
        self.steps = {-(-b // tokens_per_step): b for b in budgets}
        self.record = record

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            model.eval()
            self.record("+distill", self.steps[state.global_step], model)
            model.train()


def plot(path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_jsonl(path) if "ratio" in r]
    devices = {r.get("device", "cpu").split(":")[0] for r in rows}  # older records: the CPU
    data = lambda r: r.get("data") or ",".join(DistillConfig().data)  # noqa: E731 (older records: the default)
    several = len({data(r) for r in rows}) > 1
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, run_data in sorted({(r["sparsity"], data(r)) for r in rows}):
        points = [r for r in rows if r["sparsity"] == s and data(r) == run_data]
        for names, style, what in ((OOD, "-o", "out of calibration"), (CALIB, "--s", "calibration sources")):
            if several and names is CALIB:
                continue  # one line per run: out of calibration, what a run on other data is for
            kd = [r for r in points if r["tier"] == "+distill"]
            ax.plot([0] + [r["tokens"] for r in kd],
                    [gmean(r["ratio"][d] for d in names) for r in points if r["tier"] == "+reconstruct"][:1]
                    + [gmean(r["ratio"][d] for d in names) for r in kd], style,
                    label=f"{s:.0%}, {what}" + (f", data {run_data}" if several else ""))
            for r in points:
                if r["tier"] == "prune":
                    ax.plot([0], [gmean(r["ratio"][d] for d in names)], "x", color="gray")
    ax.set(xlabel="distillation tokens (0: prune + reconstruction; x: prune only)",
           ylabel="perplexity / dense (geo-mean)",
           title=f"GPrune on SmolLM2-135M: recovery against tokens ({', '.join(sorted(devices))})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--tokens", default="4k,12k,24k", help="token budgets to evaluate at (comma-separated)")
    ap.add_argument("--batch-size", type=int, default=None, help="windows per step [default: recover's for the device]")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--data", default=",".join(DistillConfig().data), help="distillation data (recover --data)")
    ap.add_argument("--weights", default=None, help="mixture weights, one per --data source (recover --weights)")
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (recover --device)")
    ap.add_argument("--out")
    ap.add_argument("--plot", help="draw this jsonl (to --png) and exit")
    ap.add_argument("--png", default="bench/results/recover_curve.png")
    ap.add_argument("--save", help="also write the reconstructed and the distilled model to SAVE-recon / SAVE-kd")
    args = ap.parse_args()
    if args.plot:
        return plot(args.plot, args.png)
    context = RunContext(device=args.device, threads=args.threads).resolve()  # sets torch's threads
    budgets = sorted(parse_tokens(t) for t in args.tokens.split(","))
    model, tokenizer = load_model(str(builtin_hf_dir()))
    evals = eval_sets(tokenizer, args.eval_windows)
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    started = time.perf_counter()

    def record(tier: str, tokens: int, m) -> None:
        ppl = {d: perplexity(m, w) for d, w in evals.items()}
        row = {"sparsity": args.sparsity, "device": context.device, "data": args.data, "weights": args.weights,
               "tier": tier, "tokens": tokens, "ppl": ppl,
               "ratio": {d: ppl[d] / dense[d] for d in ppl}, "dense_ppl": dense,
               "wall_s": round(time.perf_counter() - started, 1)}
        append_jsonl(args.out, row)
        print(tier, tokens, {d: round(r, 3) for d, r in row["ratio"].items()}, flush=True)

    pruned, _ = prune_model(model, tokenizer, recipe("gprune", args.sparsity), context=context)
    record("prune", 0, pruned)
    pruning = recipe("gprune", args.sparsity, reconstruct=True)
    pruned, _ = prune_model(model, tokenizer, pruning, context=context)
    record("+reconstruct", 0, pruned)
    if args.save:
        save_checkpoint(pruned, tokenizer, args.save + "-recon", overwrite=True,
                        extra_files={RECIPE_FILE: pruning.to_json()})
    cfg = DistillConfig(tokens=budgets[-1], batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                        data=args.data, weights=args.weights and [float(w) for w in args.weights.split(",")],
                        save_steps=0, eval_windows=0)
    callback = EvaluateAt(budgets, cfg.batch_for(context.torch_device().type) * args.seq_len, record)
    student, history = distill_model(pruned, model, tokenizer, cfg, callbacks=[callback], context=context)
    if args.save:
        distill = json.dumps(cfg.to_dict(), indent=2)
        save_checkpoint(student, tokenizer, args.save + "-kd", overwrite=True,
                        extra_files={RECIPE_FILE: pruning.to_json(), "distill.json": distill})
    append_jsonl(args.out, {"sparsity": args.sparsity, "device": context.device, "data": args.data, "tier": "distill-run",
                            "tokens": history.tokens_seen, "tokens_per_step": history.tokens_per_step,
                            "seconds_with_evaluations": history.seconds, "loss_history": history.loss_history})


if __name__ == "__main__":
    main()
