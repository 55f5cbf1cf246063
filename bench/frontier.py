"""Equal bytes: pruned (+ recovered) models quantized against the dense model quantized harder,
all on llama.cpp. Every artifact is verified against the dense q8_0 GGUF (perplexity per
distribution on held-out text, decode and prefill speed in alternating pairs, file size), one
JSON line each; --plot draws perplexity against size and against decode speed.

    python bench/frontier.py --model dense=smollm2-135m:q8_0,q4_k_m,q3_k_m,q2_k \\
        --model gprune20=runs/g20-kd:q8_0,q4_k_m --out bench/results/frontier.jsonl
    python bench/frontier.py --plot bench/results/frontier.jsonl --png bench/results/frontier.png

MODEL is a pruned-model directory or a built-in name. Artifacts and reports go to --work."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import EVAL, OOD, append_jsonl, gmean, read_jsonl

from edgecore.loading import builtin_hf_dir
from gprune_edge.export import export
from runtime_checks.settings import SpeedSettings, VerifySettings
from runtime_checks.verify import verify


def parse_model(spec: str) -> tuple[str, str, list[str]]:
    label, _, rest = spec.partition("=")
    path, _, dtypes = rest.rpartition(":")
    return label, path, dtypes.split(",")


def model_dir(path: str) -> Path:
    return builtin_hf_dir(path) if not Path(path).exists() else Path(path)


def measure(args) -> None:
    work = Path(args.work)
    settings = VerifySettings(tasks=(), distributions=tuple(EVAL), max_windows=args.windows, threads=args.threads,
                              speed=SpeedSettings(pairs=args.pairs, threads=args.threads))
    dense_label, dense_path, _ = parse_model(args.model[0])
    baseline = work / "artifacts" / f"{dense_label}-q8_0.gguf"
    if not baseline.exists():
        export(model_dir(dense_path), "gguf", "q8_0", baseline, threads=args.threads)
    for spec in args.model:
        label, path, dtypes = parse_model(spec)
        for dtype in dtypes:
            artifact = work / "artifacts" / f"{label}-{dtype}.gguf"
            if not artifact.exists():
                export(model_dir(path), "gguf", dtype, artifact, threads=args.threads, parity="warn")
            report = verify(artifact, baseline, work / "reports" / f"{label}-{dtype}", settings=settings,
                            tokenizer_from=model_dir(dense_path), overwrite=True)
            c = report.candidates[0].comparison
            row = {"label": label, "dtype": dtype, "file_mb": report.candidates[0].artifact.file_mb,
                   "ppl": {d: p.candidate for d, p in c.perplexity.items()},
                   "ppl_ratio_to_dense_q8_0": {d: p.ratio for d, p in c.perplexity.items()},
                   "decode_ratio": c.speed_ratio.decode_tok_s, "prefill_ratio": c.speed_ratio.prefill_tok_s,
                   "baseline_ppl": {d: p.baseline for d, p in c.perplexity.items()}}
            append_jsonl(args.out, row)
            print(label, dtype, f"{row['file_mb']:.1f} MB, OOD ppl x{ood(row):.3f}, decode x{row['decode_ratio']:.2f}",
                  flush=True)


def ood(row: dict) -> float:
    """Geo-mean perplexity ratio to the dense q8_0 GGUF out of calibration (and distillation) text."""
    return gmean(row["ppl_ratio_to_dense_q8_0"][d] for d in OOD)


def plot(path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {}
    for r in read_jsonl(path):
        rows[(r["label"], r["dtype"])] = r  # the last measurement of an artifact wins
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for label in dict.fromkeys(k[0] for k in rows):
        points = sorted((r for (lab, _), r in rows.items() if lab == label), key=lambda r: r["file_mb"])
        for ax, x in zip(axes, ("file_mb", "decode_ratio")):
            ax.plot([r[x] for r in points], [ood(r) for r in points], marker="o", label=label)
            for r in points:
                ax.annotate(r["dtype"], (r[x], ood(r)), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].set(xlabel="GGUF file size (MB)", ylabel="out-of-calibration perplexity / dense q8_0 (geo-mean)")
    axes[1].set(xlabel="decode speed / dense q8_0 (llama.cpp, median of pairs)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SmolLM2-135M on llama.cpp: pruned + recovered vs dense quantized harder")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="LABEL=MODEL:DTYPE,DTYPE (first: the dense model)")
    ap.add_argument("--out", help="jsonl to append to")
    ap.add_argument("--work", default="runs/frontier")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot", help="draw this jsonl and exit")
    ap.add_argument("--png", default="bench/results/frontier.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.png)
    else:
        measure(args)


if __name__ == "__main__":
    main()
