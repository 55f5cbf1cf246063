"""`verify`: an artifact against its dense baseline, each on its runtime, in one run.

For every candidate backend: accuracy (tasks, perplexity), parity of next-token
distributions against the baseline on a fixed text, speed in alternating pairs with
the baseline, peak memory in a fresh process, size and parameters; every figure also
as a delta or ratio to the baseline. The baseline runs on its own default backend
unless told otherwise, so a GGUF can be checked against the HF model it came from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from edgecore.errors import GPruneError
from edgecore.loading import resolve
from edgecore.outputs import atomic_dir, check_writable
from edgecore.textdata import eval_windows, load_documents

from runtime_checks import accuracy, tasks
from runtime_checks.footprint import describe
from runtime_checks.backends import BACKEND_NAMES, backend_class, check_artifact, default_backend, load_backend
from runtime_checks.deltas import compare_runs
from runtime_checks.environment import environment
from runtime_checks.memory import peak_rss
from runtime_checks.parity import compare_logits
from runtime_checks.speed import SpeedSettings, compare_speed

DEFAULT_DISTRIBUTIONS = ("wiki", "news", "science", "code")
PARITY_SOURCE = "wiki"  # the fixed text: the first eval window of this distribution


@dataclass
class VerifySettings:
    tasks: tuple = tasks.TASK_NAMES
    distributions: tuple = DEFAULT_DISTRIBUTIONS
    limit: int | None = 100  # questions per task (fixed-seed subsample); None = all
    seed: int = 0
    seq_len: int = accuracy.DEFAULT_SEQ_LEN
    max_windows: int = accuracy.DEFAULT_WINDOWS  # perplexity windows per distribution
    threads: int | None = 1  # 1 gives the most stable timings on a shared machine
    parity_tokens: int = 256
    speed: SpeedSettings | None = field(default_factory=SpeedSettings)  # None skips speed
    memory: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_inputs(artifact, baseline, backends, baseline_backend, settings: VerifySettings) -> None:
    """Everything that can be checked before a model is loaded, each failure in one line."""
    for name in settings.tasks:
        if name not in tasks.TASK_NAMES:
            raise GPruneError(f"unknown task {name!r}; known: {', '.join(tasks.TASK_NAMES)}")
    if settings.limit is not None and settings.limit < 1:
        raise GPruneError(f"--limit must be at least 1, got {settings.limit}")
    for spec, names in ((artifact, backends), (baseline, [baseline_backend])):
        for name in names:
            name = name or default_backend(spec)
            if name not in BACKEND_NAMES:
                raise GPruneError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
            backend_class(name)  # raises when the runtime's package is not installed
            if name == "torch" and not Path(str(spec)).expanduser().exists():
                resolve(str(spec))  # a built-in name or hub id passes; a missing path raises
            else:
                check_artifact(name, spec)


def load_tokenizer(spec):
    """The Hugging Face tokenizer of a directory, a GGUF file (built by transformers) or an ONNX export."""
    from transformers import AutoTokenizer

    source = resolve(str(spec))
    try:
        if isinstance(source, Path) and source.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        if isinstance(source, Path) and source.is_file():  # model.onnx: tokenizer files sit beside it
            source = source.parent
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise GPruneError(f"cannot load a tokenizer for {spec}: {str(e).splitlines()[0]}") from None


def fixed_text_ids(tokenizer, length: int) -> list[int]:
    window = eval_windows(tokenizer, load_documents(PARITY_SOURCE, split="eval"), length, 1, source=PARITY_SOURCE)
    return window[0].tolist()


def _run(backend, spec, name: str, tokenizer, settings: VerifySettings) -> dict:
    """Accuracy, memory and size of one model on one backend."""
    measured = accuracy.evaluate(backend, tokenizer, settings.tasks, settings.distributions, settings.limit,
                                 settings.seed, settings.seq_len, settings.max_windows)
    return {
        "artifact": describe(spec),
        "backend": name,
        "tasks": {k: v.to_dict() for k, v in measured["tasks"].items()},
        "perplexity": {k: v.to_dict() for k, v in measured["perplexity"].items()},
        "memory": peak_rss(spec, name, settings.threads) if settings.memory else None,
    }


def run_verification(artifact, baseline, backends=None, baseline_backend: str | None = None,
                     settings: VerifySettings | None = None, tokenizer_from=None) -> dict:
    """The report (a JSON-ready dict) of `artifact` on each of `backends` against `baseline`.
    The text is tokenized by the baseline's tokenizer, or by `tokenizer_from`'s (an HF directory)."""
    settings = settings or VerifySettings()
    backends = list(backends or [default_backend(artifact)])
    baseline_backend = baseline_backend or default_backend(baseline)
    check_inputs(artifact, baseline, backends, baseline_backend, settings)
    for name in backends:  # a file the runtime rejects must fail now, not after the baseline's evaluation
        load_backend(name, artifact, settings.threads).close()
    tokenizer = load_tokenizer(tokenizer_from or baseline)
    prompt = fixed_text_ids(tokenizer, max(settings.parity_tokens, settings.speed.prefill_tokens
                                           if settings.speed else 0))
    parity_ids = prompt[:settings.parity_tokens]
    report = {"artifact": str(artifact), "baseline": str(baseline), "settings": settings.to_dict(),
              "environment": environment(settings.threads), "candidates": []}
    with load_backend(baseline_backend, baseline, settings.threads) as base:
        report["baseline_run"] = _run(base, baseline, baseline_backend, tokenizer, settings)
        base_logits = base.logits(parity_ids)
        for name in tqdm(backends, desc="candidate backends", unit="backend", leave=False):
            with load_backend(name, artifact, settings.threads) as cand:
                run = _run(cand, artifact, name, tokenizer, settings)
                run["parity"] = compare_logits(base_logits, cand.logits(parity_ids), parity_ids).to_dict()
                run["speed"] = compare_speed(cand, base, prompt, settings.speed) if settings.speed else None
            run["comparison"] = compare_runs(run, report["baseline_run"])
            report["candidates"].append(run)
    return report


def verify(artifact, baseline, out_dir, backends=None, baseline_backend: str | None = None,
           settings: VerifySettings | None = None, thresholds: dict | None = None, overwrite: bool = False,
           tokenizer_from=None) -> dict:
    """run_verification, the gate when `thresholds` are given (gate.load_thresholds), then report.json,
    report.md and report.html written atomically to `out_dir`. report["gate"]["failures"] lists what failed."""
    from runtime_checks import gate
    from runtime_checks.report import write_report

    check_writable(out_dir, overwrite)  # fail before the slow part
    report = run_verification(artifact, baseline, backends, baseline_backend, settings, tokenizer_from)
    failures = None
    if thresholds is not None:
        failures = gate.evaluate(report, thresholds)
        report["gate"] = {"thresholds": thresholds, "passed": not failures, "failures": [str(f) for f in failures]}
    with atomic_dir(out_dir, overwrite) as tmp:
        write_report(report, tmp, failures)
    return report
