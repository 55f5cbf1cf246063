"""`build`: everything for one device target in one call.

Without budgets: prune at the target's sparsity (with reconstruction, as the gprune recipe
does by default), distill from the dense model when there is a token budget, export the
pruned and the dense model to every artifact the target runs, verify each pruned artifact
against the dense one on the same runtime, and gate on the target's thresholds.

With budgets (`Budgets`: size, decode speedup, memory, perplexity ratio): search sparsities
x the target's artifact types, the dense model quantized included, for the most accurate
artifact within every budget. Predictions skip what cannot fit; the rest is measured on the
quick tier (`BuildConfig.search`) against the reference, the dense model at the target's
default type; the winner is verified on the full tier and gated on the budgets. When the
dense model quantized wins, the build says so and ships it.

Every stage is kept in the run folder as it completes (gprune_edge.run_folder), so the same
command continues an interrupted build; build.json and the report are written last."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError, note
from edgecore.families import family_of
from edgecore.loading import load_config, load_model, resolve
from edgecore.outputs import claim_output, write_atomic
from edgecore.params import prunable_params
from edgecore.run_context import RunContext
from gprune.prune import prune
from gprune_edge.budgets import MB, predicted_misses, predicted_size
from gprune_edge.build_config import BuildConfig
from gprune_edge.export import export
from gprune_edge.run_folder import RunFolder, remove_path, stage_key
from gprune_edge.targets import TargetProfile, load_target
from recovery.distill import recover
from runtime_checks.report_schema import GateResult, Report
from runtime_checks.verify import verify

BUILD_FILE = "build.json"
UNTIMED_SPEEDUP = {"median": 1.0, "low": None, "high": None, "pairs": 0}  # a baseline's, by definition
FINAL_FILES = (BUILD_FILE, "report.md", "report.html", "frontier.png")  # written last, removed first


def model_label(sparsity: float) -> str:
    return "dense" if sparsity == 0 else f"pruned{round(sparsity * 100):02d}"


def artifact_name(label: str, fmt: str, dtype: str) -> str:
    return f"{label}-{dtype}.gguf" if fmt == "gguf" else f"{label}-onnx-{dtype}"


@dataclass
class Candidate:
    """One model x artifact type the build made or considered, with what was measured.
    Ratios are to the build's baseline: the dense model of the same type (no budgets) or
    the reference (budget build)."""
    sparsity: float
    format: str
    dtype: str
    artifact: str | None = None  # relative to the build folder; None: not built
    size_bytes: int | None = None  # measured, or predicted when not built
    perplexity_ratio: float | None = None  # geometric mean over distributions
    max_perplexity_ratio: float | None = None  # the worst distribution's
    decode_speedup: dict | None = None  # median, low, high (confidence interval), pairs
    peak_memory_mb: float | None = None
    accuracy_delta: float | None = None  # mean zero-shot accuracy change (full tier only)
    verdict: str = ""  # "meets budgets", "misses: ...", "skipped: ...", or the gate's verdict
    report: str | None = None  # the verification report (relative)

    @property
    def label(self) -> str:
        return artifact_name(model_label(self.sparsity), self.format, self.dtype)

    @property
    def measured(self) -> bool:
        return self.perplexity_ratio is not None

    def to_dict(self) -> dict:
        return {"label": self.label, **asdict(self)}


@dataclass
class BuiltArtifact:
    """An artifact the build ships, verified on the full tier and gated."""
    artifact: str
    format: str
    dtype: str
    sparsity: float
    size_bytes: int
    baseline: str  # the artifact it was measured against (relative)
    baseline_size_bytes: int
    export_parity: dict
    fallbacks: list[str]
    report: str
    gate: GateResult

    def to_dict(self) -> dict:
        return {**asdict(self), "gate": self.gate.to_dict()}


@dataclass
class BuildResult:
    out: Path
    config: BuildConfig
    target: TargetProfile
    artifacts: list[BuiltArtifact]  # what the build ships
    candidates: list[Candidate]  # everything made or considered (the frontier)
    prune: dict = field(default_factory=dict)  # per pruned model: sparsity achieved, prunable parameters
    recovery: dict = field(default_factory=dict)  # per distilled model: tokens, held-out KL before/after
    note: str = ""  # the build's conclusion in a sentence (e.g. that the dense model quantized wins)

    @property
    def verdict(self) -> str:
        """"pass", "fail" or "undecided" (a speed figure the machine was too noisy to settle)."""
        verdicts = {a.gate.verdict for a in self.artifacts}
        return "fail" if "fail" in verdicts else "undecided" if "undecided" in verdicts else "pass"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        """What build.json holds."""
        return {"config": self.config.to_dict(), "target": self.target.to_dict(), "verdict": self.verdict,
                "passed": self.passed, "note": self.note, "artifacts": [a.to_dict() for a in self.artifacts],
                "candidates": [c.to_dict() for c in self.candidates], "prune": self.prune,
                "recovery": self.recovery}


def build(config: BuildConfig, out: str | Path, overwrite: bool = False,
          context: RunContext | None = None) -> BuildResult:
    """Run the build into the folder `out`: models/, artifacts/, checks/ (the search's quick
    measurements), reports/ (full verification of what ships), stages.json, and, last,
    build.json and report.md/.html with frontier.png. An interrupted build in `out` continues;
    `overwrite` starts over. Export and verification run on `context.threads`, default the target's."""
    context = (context or RunContext()).resolve()  # fail before the slow part
    profile = load_target(config.target)
    recipe = config.recipe(profile)
    identity = {"build": recipe.model, "target": profile.name}
    with claim_output(out, overwrite, inputs=[recipe.model, config.target], resume=True) as out:
        if overwrite:
            remove_path(out)
        folder = RunFolder(out, identity)
        for name in FINAL_FILES:  # the old conclusion no longer describes the folder
            remove_path(out / name)
        run = _Build(folder, config, profile, context)
        result = run.search() if config.budgets.given else run.fixed()
        folder.drop_unused()
        from gprune_edge.build_report import write_build_report

        write_build_report(result)
        write_atomic(out / BUILD_FILE, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return result


class _Build:
    """The stages of one build, each kept in the run folder."""

    def __init__(self, folder: RunFolder, config: BuildConfig, profile: TargetProfile, context: RunContext):
        self.folder, self.out, self.config, self.profile, self.context = folder, folder.root, config, profile, context
        self.recipe = _for_runtimes(config.recipe(profile), profile, context)
        self.threads = context.threads or profile.threads
        self.prune_info, self.recovery_info, self.export_info = {}, {}, {}

    # models ---------------------------------------------------------------------------
    def _dense(self) -> tuple[Path, str]:
        """A safetensors directory of the dense model (exporters read directories)."""
        source = resolve(self.recipe.model)
        key = stage_key("dense", self.recipe.model)
        if isinstance(source, Path) and source.is_dir():
            return source, key

        def save(path, resume):
            model, tokenizer = load_model(self.recipe.model, trust_remote_code=self.context.trust_remote_code)
            save_checkpoint(model, tokenizer, path)
            return {}
        self.folder.run("save dense", "models/dense", key, save)
        return self.out / "models" / "dense", key

    def model(self, sparsity: float) -> tuple[Path, str]:
        """The model directory at `sparsity` (pruned, then distilled when there are tokens) and its key."""
        if sparsity == 0:
            return self._dense()
        label = model_label(sparsity)
        recipe = self.recipe.replace(sparsity=sparsity)
        key = stage_key("prune", recipe.to_dict())

        def make_pruned(path, resume):
            result = prune(recipe, path, context=self.context)
            return {"sparsity": result.sparsity, "prunable_before": result.prunable_before,
                    "prunable_after": result.prunable_after}
        self.prune_info[label] = self.folder.run(f"prune {label}", f"models/{label}", key, make_pruned)
        model_dir = self.out / "models" / label
        distill = self.config.distill_settings(self.context.torch_device().type)
        if distill is None:
            return model_dir, key
        key = stage_key("distill", key, distill.to_dict())

        def make_recovered(path, resume):
            if not resume:
                remove_path(path.with_name(path.name + ".partial"))
            done = recover(model_dir, distill, path, resume=resume, context=self.context)
            return {"tokens": done.history.tokens_seen, "heldout_kl_before": done.kl_before,
                    "heldout_kl_after": done.kl_after, "seconds": done.history.seconds}
        self.recovery_info[label] = self.folder.run(f"distill {label}", f"models/{label}-distilled", key,
                                                    make_recovered)
        return self.out / "models" / f"{label}-distilled", key

    # artifacts and checks -------------------------------------------------------------
    def artifact(self, candidate: Candidate) -> str:
        """Export the candidate's model to its artifact (kept); fills size, returns the stage key."""
        model_dir, model_key = self.model(candidate.sparsity)
        rel = f"artifacts/{candidate.label}"
        key = stage_key("export", model_key, candidate.format, candidate.dtype)

        def make(path, resume):
            done = export(model_dir, candidate.format, candidate.dtype, path, threads=self.threads)
            return {"size_bytes": done.size_bytes, "parity": done.parity, "fallbacks": done.fallbacks}
        info = self.folder.run(f"export {candidate.label}", rel, key, make)
        candidate.artifact, candidate.size_bytes = rel, info["size_bytes"]
        self.export_info[candidate.label] = info
        return key

    def check(self, candidate: Candidate, baseline: Candidate, settings, thresholds: dict, where: str) -> Report:
        """Verify the candidate against the baseline artifact; fills the candidate's figures."""
        runtime = self.profile.runtime_for(candidate.format)
        key = stage_key("verify", self.artifact(candidate), self.artifact(baseline), settings.to_dict(), thresholds,
                        runtime)
        rel = f"{where}/{candidate.label}"
        dense_dir, _ = self._dense()

        def make(path, resume):
            verify(self.out / candidate.artifact, self.out / baseline.artifact, path, backends=[runtime],
                   baseline_backend=runtime, settings=settings, thresholds=thresholds, tokenizer_from=dense_dir,
                   reuse_baseline=True)
            return {}
        self.folder.run(f"verify {candidate.label} ({where})", rel, key, make)
        report = Report.from_dict(json.loads((self.out / rel / "report.json").read_text()))
        _fill(candidate, report)
        candidate.report = f"{rel}/report.md"
        return report

    # the two kinds of build -----------------------------------------------------------
    def fixed(self) -> BuildResult:
        """The target's artifacts at one sparsity, each against the dense model of its type."""
        shipped, candidates = [], []
        settings = self.config.verify_settings(self.threads)
        for fmt, dtype in self.profile.formats:
            pruned, dense = Candidate(self.recipe.sparsity, fmt, dtype), Candidate(0.0, fmt, dtype)
            report = self.check(pruned, dense, settings, self.profile.gate, "reports")
            pruned.verdict = report.gate.verdict
            dense.perplexity_ratio = dense.max_perplexity_ratio = 1.0  # by definition: the ratios' denominator
            dense.decode_speedup = dict(UNTIMED_SPEEDUP)
            dense.verdict = "baseline"
            candidates += [dense, pruned]
            shipped.append(self._shipped(pruned, dense, report))
        return self._result(shipped, candidates, "")

    def search(self) -> BuildResult:
        budgets = self.config.budgets
        types = [tuple(t.split(":", 1)) for t in self.profile.search_types]
        sparsities = sorted({0.0, *self.profile.search_sparsities}) if self.config.sparsity is None \
            else [self.config.sparsity]
        dense = {t: Candidate(0.0, *t) for t in types}
        reference = dense[types[0]]  # the dense model at the target's default type: every ratio's denominator
        for c in dense.values():
            self.artifact(c)
        candidates = self._predict(sparsities, types, dense, reference)
        viable = [c for c in candidates if not c.verdict]
        if not viable:
            raise GPruneError(_unreachable(budgets, candidates, self.config.sparsity, reference))
        settings, thresholds = self.config.search_settings(self.threads), budgets.gate()
        best, given_up = None, set()
        for c in viable:
            if (c.format, c.dtype) in given_up:
                c.verdict = "skipped: a less sparse model of this type already scored worse or beyond the budget"
                continue
            self.artifact(c)
            if budgets.max_size_mb is not None and c.size_bytes / MB > budgets.max_size_mb:
                c.verdict = f"misses: size {c.size_bytes / MB:.4g} MB > {budgets.max_size_mb:g} MB"
                continue
            report = self.check(c, reference, _reference_settings(settings, c is reference), thresholds, "checks")
            misses = report.gate.failures + report.gate.undecided
            c.verdict = "misses: " + "; ".join(misses) if misses else "meets budgets"
            if not misses and (best is None or c.perplexity_ratio < best.perplexity_ratio):
                best = c
            too_far = budgets.max_perplexity_ratio is not None and c.max_perplexity_ratio > budgets.max_perplexity_ratio
            if too_far or (best is not None and c.perplexity_ratio >= best.perplexity_ratio):
                given_up.add((c.format, c.dtype))  # more sparsity only adds error at this type
        if best is None:
            raise GPruneError(_closest(budgets, candidates))
        measured = {k: getattr(best, k) for k in ("perplexity_ratio", "max_perplexity_ratio", "decode_speedup")}
        report = self.check(best, reference, _reference_settings(self.config.verify_settings(self.threads),
                                                                 best is reference), thresholds, "reports")
        for name, value in measured.items():  # the frontier compares candidates on one tier: the quick one
            setattr(best, name, value)
        best.verdict = "chosen: " + report.gate.verdict
        note = (f"the dense model as {best.dtype} wins: no pruned candidate was more accurate within "
                f"{budgets.describe()}" if best.sparsity == 0 else
                f"pruned {best.sparsity:.0%} as {best.dtype} is the most accurate within {budgets.describe()}")
        return self._result([self._shipped(best, reference, report)], candidates, note)

    # helpers --------------------------------------------------------------------------
    def _predict(self, sparsities, types, dense: dict, reference: Candidate) -> list[Candidate]:
        """Every candidate, in the order the search measures them, with a verdict when a prediction
        (or the dense artifact's exact size) rules it out."""
        config = load_config(self.recipe.model, self.context.trust_remote_code)
        prunable = prunable_params(config)
        embeddings = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
        candidates = []
        for sparsity in sparsities:
            for t in types:
                c = dense[t] if sparsity == 0 else Candidate(sparsity, *t, size_bytes=predicted_size(
                    dense[t].size_bytes, sparsity, prunable, prunable + embeddings))
                miss = predicted_misses(self.config.budgets, c.size_bytes, reference.size_bytes)
                if miss:
                    c.verdict = f"skipped: {miss}" + (" (predicted)" if sparsity else "")
                candidates.append(c)
        return candidates

    def _shipped(self, c: Candidate, baseline: Candidate, report: Report) -> BuiltArtifact:
        info = self.export_info[c.label]
        return BuiltArtifact(c.artifact, c.format, c.dtype, c.sparsity, c.size_bytes, baseline.artifact,
                             baseline.size_bytes, info["parity"], info["fallbacks"], c.report, report.gate)

    def _result(self, shipped, candidates, note) -> BuildResult:
        return BuildResult(self.out, self.config, self.profile, shipped, candidates, self.prune_info,
                           self.recovery_info, note)


def _for_runtimes(recipe, profile: TargetProfile, context: RunContext):
    """The recipe, made to keep the stock architecture where the target ships GGUF of a family
    whose llama.cpp architecture has no per-layer widths (Qwen3, Gemma 3)."""
    family = family_of(load_config(recipe.model, context.trust_remote_code))
    if family.gguf_per_layer or "gguf" not in {fmt for fmt, _ in profile.formats}:
        return recipe
    note(f"{family.model_type}: llama.cpp holds no per-layer widths for it; pruning every layer to the same "
         "widths without added biases")
    return recipe.stock_layout()


def _reference_settings(settings, is_reference: bool):
    """The reference against itself: its ratios are 1 by definition, so no timing pairs."""
    return settings.replace(speed=None) if is_reference else settings


def _fill(c: Candidate, report: Report) -> None:
    run = report.candidates[0]
    ratios = [p.ratio for p in run.comparison.perplexity.values()]
    c.perplexity_ratio = statistics.geometric_mean(ratios) if ratios else None
    c.max_perplexity_ratio = run.comparison.max_perplexity_ratio
    decode = run.speed.ratio["decode_tok_s"] if run.speed else None
    c.decode_speedup = decode and {"median": decode.median, "low": decode.low, "high": decode.high,
                                   "pairs": len(decode.pairs)}
    if run.speed is None and report.artifact == report.baseline:
        c.decode_speedup = dict(UNTIMED_SPEEDUP)
    c.peak_memory_mb = run.memory.peak_rss_mb if run.memory else None
    c.accuracy_delta = run.comparison.mean_accuracy.delta


def _unreachable(budgets, candidates, sparsity, reference: Candidate) -> str:
    smallest = min(candidates, key=lambda c: c.size_bytes)
    where = f"at sparsity {sparsity:g} (drop --sparsity to let the build search)" if sparsity is not None else \
        "among the target's candidates"
    return (f"no artifact can meet {budgets.describe()} {where}: the smallest is about "
            f"{smallest.size_bytes / MB:.4g} MB ({smallest.label}), its decode bound about "
            f"{reference.size_bytes / smallest.size_bytes:.2f}x")


def _closest(budgets, candidates) -> str:
    """The best figure measured for each budget, and where."""
    parts = []

    def best(figure, pick, text):
        having = [c for c in candidates if figure(c) is not None]
        if having:
            c = pick(having, key=figure)
            parts.append(f"{text.format(figure(c))} ({c.label})")
    if budgets.max_perplexity_ratio is not None:
        best(lambda c: c.max_perplexity_ratio, min, "perplexity ratio {:.3f}")
    if budgets.min_decode_speedup is not None:
        best(lambda c: c.decode_speedup and c.decode_speedup["low"], max, "decode at least {:.2f}x")
    if budgets.max_memory_mb is not None:
        best(lambda c: c.peak_memory_mb, min, "memory {:.0f} MB")
    if budgets.max_size_mb is not None:
        best(lambda c: c.artifact and c.size_bytes / MB, min, "size {:.4g} MB")
    return (f"no candidate meets {budgets.describe()}; closest: {', '.join(parts) or 'none measured'}; "
            "every candidate is listed in stages.json and measured in checks/")
