"""`gprune-edge verify`: parse options, call runtime_checks.verify.verify, print the outcome."""

from __future__ import annotations

import click

from runtime_checks.backends import BACKEND_NAMES
from runtime_checks.settings import (
    BOUNDS,
    DEFAULT_DISTRIBUTIONS,
    SpeedSettings,
    VerifySettings,
    check_distributions,
    check_range,
    check_tasks,
)
from runtime_checks.tasks import TASK_NAMES


def _names(value: str | None, default: tuple) -> tuple:
    if value is None:
        return default
    if value == "none":
        return ()
    return tuple(n.strip() for n in value.split(",") if n.strip())


def check_options(tasks: tuple, distributions: tuple, limit: int, windows: int, seq_len: int, threads: int,
                  pairs: int) -> None:
    """The options in the settings' ranges (runtime_checks.settings), each failure in one line naming the
    option as typed, before anything is loaded. 0 keeps its CLI meaning for --limit and --pairs."""
    check_tasks("--tasks", tasks)
    check_distributions("--distributions", distributions)
    check_range("--limit", limit, 0, note=" (0 for every question)")
    check_range("--windows", windows, *BOUNDS["max_windows"])
    check_range("--seq-len", seq_len, *BOUNDS["seq_len"])
    check_range("--threads", threads, *BOUNDS["threads"])
    check_range("--pairs", pairs, 0, note=" (0 skips speed)")


@click.command()
@click.argument("artifact")
@click.option("--baseline", required=True, help="The dense model: HF directory, .gguf, built-in name or hub id.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKEND_NAMES),
              help="Runtime(s) for ARTIFACT (repeatable) [default: from the artifact: directory -> torch, "
                   ".gguf -> llama.cpp, .onnx -> onnxruntime].")
@click.option("--baseline-backend", type=click.Choice(BACKEND_NAMES), default=None,
              help="Runtime for the baseline [default: from the baseline artifact].")
@click.option("--tasks", default=None, help=f"Comma-separated tasks, or 'none' [default: all: {','.join(TASK_NAMES)}].")
@click.option("--distributions", default=None,
              help="Comma-separated text distributions for perplexity, or 'none' [default: wiki,news,science,code].")
@click.option("--limit", type=int, default=100, show_default=True,
              help="Questions per task (fixed-seed subsample); 0 means every question.")
@click.option("--windows", type=int, default=16, show_default=True, help="Perplexity windows per distribution.")
@click.option("--seq-len", type=int, default=512, show_default=True, help="Perplexity window length in tokens (2 to 8192).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Threads for every backend (1 gives the most stable timings on a shared machine).")
@click.option("--pairs", type=int, default=7, show_default=True,
              help="Alternating candidate/baseline timing pairs; 0 skips speed.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory subprocesses.")
@click.option("--gate", "gate_file", type=click.Path(), default=None,
              help="Thresholds file (JSON/YAML): max_accuracy_drop, max_perplexity_ratio, min_decode_speedup, "
                   "max_peak_memory_mb, min_top1_agreement. Exit status 3 when one fails.")
@click.option("--tokenizer", "tokenizer_from", type=click.Path(), default=None,
              help="HF directory whose tokenizer splits the text [default: the baseline's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for report.json/.md/.html.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def verify(artifact, baseline, backends, baseline_backend, tasks, distributions, limit, windows, seq_len, threads,
           pairs, no_memory, gate_file, tokenizer_from, seed, out, overwrite):
    """Verify ARTIFACT against the dense BASELINE: accuracy, perplexity, parity, speed, memory.

    Writes report.json, report.md and a self-contained report.html to OUT; with
    --gate, exits with status 3 and names every threshold that failed."""
    from runtime_checks import gate
    from runtime_checks.verify import verify as run_verify

    tasks, distributions = _names(tasks, TASK_NAMES), _names(distributions, DEFAULT_DISTRIBUTIONS)
    check_options(tasks, distributions, limit, windows, seq_len, threads, pairs)
    thresholds = gate.load_thresholds(gate_file) if gate_file else None
    settings = VerifySettings(
        tasks=tasks, distributions=distributions, limit=limit or None, seed=seed, seq_len=seq_len, max_windows=windows, threads=threads,
        speed=SpeedSettings(pairs=pairs, threads=threads) if pairs > 0 else None, memory=not no_memory)
    report = run_verify(artifact, baseline, out, list(backends) or None, baseline_backend, settings, thresholds,
                        overwrite, tokenizer_from)
    click.echo(f"report written to {out}/report.md")
    if report.gate is not None:
        for failure in report.gate.failures:
            click.echo(f"gate FAILED: {failure}", err=True)
        if not report.gate.passed:
            raise SystemExit(3)  # 1: errors, 2: usage (click)
        click.echo("gate passed")
