"""`verify`: an artifact against its dense baseline, each on its runtime, in one run.

For every candidate backend: accuracy (tasks, perplexity), parity of next-token
distributions against the baseline on a fixed text, speed in alternating pairs with
the baseline, peak memory in a fresh process, size and parameters; every figure also
as a delta or ratio to the baseline. The baseline runs on its own default backend
unless told otherwise, so a GGUF can be checked against the HF model it came from."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from edgecore.errors import GPruneError, first_line
from edgecore.loading import resolve
from edgecore.outputs import atomic_dir, claim_output
from edgecore.textdata import eval_windows, load_documents
from runtime_checks import accuracy, baseline_cache
from runtime_checks.backends import BACKEND_NAMES, backend_class, check_artifact, default_backend, load_backend
from runtime_checks.deltas import compare_runs
from runtime_checks.environment import environment
from runtime_checks.footprint import footprint
from runtime_checks.memory import peak_rss
from runtime_checks.parity import check_same_vocabulary, check_tokenizer_fits, compare_logits
from runtime_checks.report_schema import CandidateRun, Report, Run
from runtime_checks.settings import DEFAULT_DISTRIBUTIONS, VerifySettings  # noqa: F401  (re-exported)
from runtime_checks.speed import compare_speed

PARITY_SOURCE = "wiki"  # the fixed text: the first eval window of this distribution


def check_inputs(artifact, baseline, backends, baseline_backend, settings: VerifySettings) -> None:
    """Everything that can be checked before a model is loaded, each failure in one line."""
    settings.validate()  # ran on construction; again in case a field was assigned since
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


def check_vocabularies(artifact, vocab: dict[str, int], baseline, baseline_vocab: int, tokenizer_source,
                       tokenizer_size: int) -> None:
    """Before anything is evaluated: the artifact (`vocab`: its size per backend) and the baseline must
    share one vocabulary, and the tokenizer must not produce ids beyond it (else a meaningless report,
    or an index error), each failure in one line naming both sizes."""
    for name, size in vocab.items():
        check_same_vocabulary(f"the artifact {artifact} ({name})", size, f"the baseline {baseline}", baseline_vocab,
                              "compare an artifact with the model it was pruned from, or models that share "
                              "one tokenizer")
    check_tokenizer_fits(f"the tokenizer of {tokenizer_source}", tokenizer_size, "the models", baseline_vocab,
                         "pass --tokenizer with the models' own tokenizer (an HF directory)")


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
        raise GPruneError(f"cannot load a tokenizer for {spec}: {first_line(e)}") from None


def fixed_text_ids(tokenizer, length: int) -> list[int]:
    window = eval_windows(tokenizer, load_documents(PARITY_SOURCE, split="eval"), length, 1, source=PARITY_SOURCE)
    return window[0].tolist()


def _load(name: str, spec, settings: VerifySettings):
    return load_backend(name, spec, settings.threads, settings.runtime_context(), settings.flash_attention)


def _run(backend, spec, name: str, tokenizer, settings: VerifySettings) -> Run:
    """Accuracy, memory and size of one model on one backend."""
    measured = accuracy.evaluate(backend, tokenizer, settings.tasks, settings.distributions, settings.limit,
                                 settings.seed, settings.seq_len, settings.max_windows)
    return Run(artifact=footprint(spec), backend=name, tasks=measured["tasks"], perplexity=measured["perplexity"],
               memory=peak_rss(spec, name, settings.threads, settings.context_length, settings.flash_attention)
               if settings.memory else None)


def _baseline_run(base, baseline, name: str, tokenizer, settings: VerifySettings, tokenizer_from,
                  reuse: bool) -> tuple[Run, str | None]:
    """The baseline's Run and, when it came from runtime_checks.baseline_cache, the date it was measured.
    With `reuse`, a cached Run is taken and a measured one stored."""
    cache_key = baseline_cache.key(baseline, name, settings, tokenizer_from) if reuse else None
    cached = baseline_cache.load(cache_key, baseline) if cache_key else None
    if cached is not None:
        return cached
    run = _run(base, baseline, name, tokenizer, settings)
    if cache_key:
        baseline_cache.store(cache_key, run)
    return run, None


def run_verification(artifact, baseline, backends=None, baseline_backend: str | None = None,
                     settings: VerifySettings | None = None, tokenizer_from=None,
                     reuse_baseline: bool = False, decode_threshold: float | None = None) -> Report:
    """The report of `artifact` on each of `backends` against `baseline` (not gated, not written).
    `decode_threshold`: the decode speedup a gate will check; speed pairs go on while their
    interval holds it (speed.compare_speed's `decide`).
    The text is tokenized by the baseline's tokenizer, or by `tokenizer_from`'s (an HF directory).
    `reuse_baseline` takes the baseline's accuracy, perplexity and memory from runtime_checks.baseline_cache
    when an earlier verification measured them under the same settings (and stores them when not);
    `report.baseline_cached` is then the date they were measured (None: measured by this run)."""
    settings = settings or VerifySettings()
    backends = list(backends or [default_backend(artifact)])
    baseline_backend = baseline_backend or default_backend(baseline)
    check_inputs(artifact, baseline, backends, baseline_backend, settings)
    vocab = {}
    for name in backends:  # a file the runtime rejects must fail now, not after the baseline's evaluation
        with _load(name, artifact, settings) as cand:
            vocab[name] = cand.vocab_size
    tokenizer = load_tokenizer(tokenizer_from or baseline)
    prompt = fixed_text_ids(tokenizer, max(settings.parity_tokens, settings.speed.prefill_tokens
                                           if settings.speed else 0))
    parity_ids = prompt[:settings.parity_tokens]
    env = environment(settings.threads)  # dated when measuring starts
    candidates = []
    with _load(baseline_backend, baseline, settings) as base:
        check_vocabularies(artifact, vocab, baseline, base.vocab_size, tokenizer_from or baseline, len(tokenizer))
        baseline_run, cached = _baseline_run(base, baseline, baseline_backend, tokenizer, settings, tokenizer_from,
                                             reuse_baseline)
        base_logits = base.logits(parity_ids)
        for name in tqdm(backends, desc="candidate backends", unit="backend", leave=False):
            with _load(name, artifact, settings) as cand:
                same = name == baseline_backend and Path(str(artifact)).resolve() == Path(str(baseline)).resolve()
                run = baseline_run if same else _run(cand, artifact, name, tokenizer, settings)  # itself: measured once
                parity = compare_logits(base_logits, cand.logits(parity_ids), parity_ids)
                speed = (compare_speed(cand, base, prompt, settings.speed, decide=decode_threshold)
                         if settings.speed else None)
            candidates.append(CandidateRun.of(run, parity, speed, compare_runs(run, baseline_run, speed)))
    return Report(artifact=str(artifact), baseline=str(baseline), settings=settings, environment=env,
                  baseline_run=baseline_run, candidates=candidates, baseline_cached=cached)


def verify(artifact, baseline, out_dir, backends=None, baseline_backend: str | None = None,
           settings: VerifySettings | None = None, thresholds: dict | None = None, overwrite: bool = False,
           tokenizer_from=None, reuse_baseline: bool = False) -> Report:
    """run_verification, the gate when `thresholds` are given (gate.load_thresholds), then report.json,
    report.md and report.html written atomically to `out_dir`. The gate's verdict is `report.gate`
    (None without thresholds): `report.gate.verdict` ("pass", "fail" or "undecided": a speed interval
    holding its threshold), with `report.gate.failures` and `report.gate.undecided`, a line each."""
    from runtime_checks import gate
    from runtime_checks.report import write_report

    with claim_output(out_dir, overwrite, inputs=[artifact, baseline, tokenizer_from]) as out_dir:
        report = run_verification(artifact, baseline, backends, baseline_backend, settings, tokenizer_from,
                                  reuse_baseline, (thresholds or {}).get("min_decode_speedup"))
        if thresholds is not None:
            report.gate = gate.check(report, thresholds)
        with atomic_dir(out_dir, overwrite) as tmp:
            write_report(report, tmp)
    return report
