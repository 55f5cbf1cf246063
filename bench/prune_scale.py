"""Wall time and peak memory of `gprune-edge prune` (streamed, GPrune with reconstruction) against model
size and calibration tokens, on random-weight bf16 checkpoints of real shapes written to disk
(edgecore.catalogue.write_random_checkpoint), with SmolLM2's tokenizer. Each run is a fresh process under
/usr/bin/time -v (peak RSS) with an empty calibration cache; with --export, the pruned output is then
exported to GGUF (streamed, parity checked against torch a layer at a time), timed the same way; both
are removed after.

    python bench/prune_scale.py --shapes smollm2-135m,llama-3.2-1b,llama-3.2-3b,llama-3.1-8b \
        --n-samples 2 --seq-len 128 --export q4_k_m --out bench/results/prune_scale.jsonl
    python bench/prune_scale.py --shapes llama-3.2-1b --n-samples 1,2,4,8 --seq-len 128 \
        --out bench/results/prune_scale.jsonl
    python bench/prune_scale.py --shapes smollm2-135m --n-samples 8 --nproc 1,2 --out bench/results/prune_scale.jsonl
    python bench/prune_scale.py --shapes llama-3.1-8b --device cuda --threads 16 --out gpu.jsonl   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecore.catalogue import CATALOGUE, write_random_checkpoint
from edgecore.loading import builtin_hf_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def checkpoint(shape: str, work: Path) -> Path:
    path = work / f"{shape}-bf16"
    if not (path / "config.json").is_file():
        write_random_checkpoint(shape, path)
        for name in TOKENIZER_FILES:  # ids below every catalogue vocabulary
            shutil.copy(builtin_hf_dir() / name, path / name)
    return path


def timed(cmd: list[str], threads: int) -> tuple[float, int, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS in MB, the run) of `cmd` under /usr/bin/time -v; exits when it fails."""
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{run.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", run.stderr).group(1)
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":")))), round(rss_kb / 1024), run


def timed_export(pruned: Path, dtype: str, threads: int, work: Path) -> dict:
    out = work / "out.gguf"
    cmd = [sys.executable, "-m", "gprune_edge", "export", str(pruned), "--format", "gguf", "--dtype", dtype,
           "--out", str(out), "--threads", str(threads), "--parity", "warn", "--overwrite", "--json"]
    seconds, rss_mb, run = timed(cmd, threads)
    result = json.loads(run.stdout)
    size_mb = out.stat().st_size / 2 ** 20
    out.unlink()
    return {"export_dtype": dtype, "export_wall_s": round(seconds, 1), "export_peak_rss_mb": rss_mb,
            "gguf_mb": round(size_mb), "export_top1": round(result["parity"]["top1_agreement"], 3),
            "export_command": " ".join(cmd[1:])}


def timed_prune(model: Path, n_samples: int, seq_len: int, sparsity: float, threads: int, nproc: int,
                work: Path, export: str | None, device: str = "cpu") -> dict:
    out, cache = work / "out", Path(tempfile.mkdtemp(dir=work, prefix="calib-"))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else []
    cmd = [sys.executable, *launcher, "-m", "gprune_edge", "prune", "--model", str(model),
           "--sparsity", str(sparsity), "--n-samples", str(n_samples), "--seq-len", str(seq_len),
           "--threads", str(threads // nproc), "--device", device, "--calib-cache", str(cache), "--out", str(out),
           "--overwrite"]
    try:
        seconds, rss_mb, _ = timed(cmd, threads // nproc)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    summary = json.loads((out / "prune_summary.json").read_text())
    diagnostics = summary["diagnostics"]
    exported = timed_export(out, export, threads, work) if export else {}
    shutil.rmtree(out)
    return {"processes": nproc, "device": device, "wall_s": round(seconds, 1), "peak_rss_mb": rss_mb,
            "planning_s": summary["seconds_planning"],
            "writing_s": summary["seconds_writing"], "calibration_s": diagnostics["calibration"]["calibration_s"],
            "calibration_tokens": diagnostics["calibration"]["tokens"],
            "reconstruction_s": diagnostics["reconstruction"]["seconds"], "sparsity": summary["sparsity_achieved"],
            "command": " ".join(cmd[1:]), **exported}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b", help=f"from {', '.join(CATALOGUE)}")
    ap.add_argument("--n-samples", default="2", help="calibration windows per source; several: a token sweep")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads in all, shared by the processes")
    ap.add_argument("--nproc", default="1", help="processes under torchrun; several: a sweep (1,2)")
    ap.add_argument("--device", default="cpu", help="where prune computes: cpu, cuda")
    ap.add_argument("--export", help="also export each pruned model to GGUF in this dtype (e.g. q4_k_m)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gprune-scale"), help="checkpoints and outputs")
    ap.add_argument("--keep-checkpoints", action="store_true")
    ap.add_argument("--out", type=Path, required=True, help="JSONL file the records are appended to")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes.split(","):
        model = checkpoint(shape, args.work)
        size_mb = sum(f.stat().st_size for f in model.glob("*.safetensors")) / 2 ** 20
        for n in (int(x) for x in args.n_samples.split(",")):
            for nproc in (int(x) for x in args.nproc.split(",")):
                record = {"shape": shape, "checkpoint_mb": round(size_mb), "layers": CATALOGUE[shape].layers,
                          "n_samples": n, "seq_len": args.seq_len,
                          **timed_prune(model, n, args.seq_len, args.sparsity, args.threads, nproc, args.work,
                                        args.export, args.device)}
                print(json.dumps(record), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
        if not args.keep_checkpoints:
            shutil.rmtree(model)


if __name__ == "__main__":
    main()
