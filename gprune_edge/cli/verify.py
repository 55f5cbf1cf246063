"""`gprune-edge verify`: parse options, call runtime_checks.verify.verify, print the outcome."""

from __future__ import annotations

import click

from runtime_checks import gate
from runtime_checks.backends import BACKEND_NAMES
from runtime_checks.gate import EXIT_FAIL, EXIT_UNDECIDED
from runtime_checks.settings import (
    BOUNDS,
    DEFAULT_CONFIDENCE,
    DEFAULT_DISTRIBUTIONS,
    DEFAULT_MAX_PAIRS,
    DEFAULT_MAX_SECONDS,
    DEFAULT_TARGET_WIDTH,
    SPEED_BOUNDS,
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
                  pairs: int, max_pairs: int | None = None, target_width: float = DEFAULT_TARGET_WIDTH,
                  max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
    """The options in the settings' ranges (runtime_checks.settings), each failure in one line naming the
    option as typed, before anything is loaded. 0 keeps its CLI meaning for --limit and --pairs."""
    check_tasks("--tasks", tasks)
    check_distributions("--distributions", distributions)
    check_range("--limit", limit, 0, note=" (0 for every question)")
    check_range("--windows", windows, *BOUNDS["max_windows"])
    check_range("--seq-len", seq_len, *BOUNDS["seq_len"])
    check_range("--threads", threads, *BOUNDS["threads"])
    check_range("--pairs", pairs, 0, note=" (0 skips speed)")
    check_range("--max-pairs", max_pairs, max(pairs, 1), note=" (--pairs)")
    check_range("--target-width", target_width, *SPEED_BOUNDS["target_width"])
    check_range("--max-seconds", max_seconds, *SPEED_BOUNDS["max_seconds"])


@click.command()
@click.argument("artifact")
@click.option("--baseline", required=True, help="The dense model: HF directory, .gguf, built-in name or hub id.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKEND_NAMES),
              help="Runtime(s) for ARTIFACT (repeatable) [default: from the artifact: directory -> torch, "
                   ".gguf -> llama.cpp, .onnx -> onnxruntime]. onnxruntime-web runs an ONNX folder in WASM "
                   "(Node.js, 1 thread unless --threads), as a browser page does.")
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
              help="Alternating candidate/baseline timing pairs, at least; 0 skips speed.")
@click.option("--max-pairs", type=int, default=None,
              help=f"Timing pairs at most: more are added until the decode ratio's {DEFAULT_CONFIDENCE:.0%} interval "
                   f"is narrow (--target-width) [default: {DEFAULT_MAX_PAIRS}, or --pairs if more].")
@click.option("--target-width", type=float, default=DEFAULT_TARGET_WIDTH, show_default=True,
              help="Stop adding pairs once the decode ratio's interval has high / low - 1 at most this.")
@click.option("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, show_default=True,
              help="Time cap on adding pairs, per candidate backend (the --pairs minimum always runs).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory subprocesses.")
@click.option("--gate", "gate_file", type=click.Path(), default=None,
              help="Thresholds file (JSON/YAML): max_accuracy_drop, max_perplexity_ratio, min_decode_speedup, "
                   "min_decode_tok_s, max_peak_memory_mb, max_model_memory_mb, min_top1_agreement. The two decode "
                   f"thresholds are decided on their intervals. Exit status {EXIT_FAIL} when a threshold fails, {EXIT_UNDECIDED} when none fails but "
                   "one is undecided: the speed interval holds the threshold (the machine is too noisy to decide).")
@click.option("--tokenizer", "tokenizer_from", type=click.Path(), default=None,
              help="HF directory whose tokenizer splits the text [default: the baseline's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for report.json/.md/.html.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def verify(artifact, baseline, backends, baseline_backend, tasks, distributions, limit, windows, seq_len, threads,
           pairs, max_pairs, target_width, max_seconds, no_memory, gate_file, tokenizer_from, seed, out, overwrite):
    """Verify ARTIFACT against the dense BASELINE: accuracy, perplexity, parity, speed, memory.

    Writes report.json, report.md and a self-contained report.html to OUT; with
    --gate, names every threshold that failed or could not be decided (speed too noisy)
    and exits with the status --gate names."""
    from runtime_checks.verify import verify as run_verify

    tasks, distributions = _names(tasks, TASK_NAMES), _names(distributions, DEFAULT_DISTRIBUTIONS)
    check_options(tasks, distributions, limit, windows, seq_len, threads, pairs, max_pairs, target_width, max_seconds)
    thresholds = gate.load_thresholds(gate_file) if gate_file else None
    speed = SpeedSettings(pairs=pairs, max_pairs=max_pairs, target_width=target_width, max_seconds=max_seconds,
                          threads=threads) if pairs > 0 else None
    settings = VerifySettings(
        tasks=tasks, distributions=distributions, limit=limit or None, seed=seed, seq_len=seq_len, max_windows=windows, threads=threads,
        speed=speed, memory=not no_memory)
    report = run_verify(artifact, baseline, out, list(backends) or None, baseline_backend, settings, thresholds,
                        overwrite, tokenizer_from)
    click.echo(f"report written to {out}/report.md")
    if report.gate is not None:
        for failure in report.gate.failures:
            click.echo(f"gate FAILED: {failure}", err=True)
        for undecided in report.gate.undecided:
            click.echo(f"gate UNDECIDED: {undecided}", err=True)
        if report.gate.verdict != "pass":
            raise SystemExit(gate.exit_code(report.gate))
        click.echo("gate passed")
