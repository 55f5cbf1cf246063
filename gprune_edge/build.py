"""`build`: the most accurate artifact within a device's budgets, in one call.

The target (targets.TargetProfile) gives the artifact types its runtime takes and its budgets
(memory at its context length, storage, a decode floor, a quality floor); the command line may
replace any of them. The build searches sparsities x those types, the dense model quantized
included: predictions skip what cannot fit (budgets.predicted_misses) or cannot win (a pruned
model is never more accurate than the dense model of its type), the rest is measured on the
quick tier (`BuildConfig.search`) against the reference, the dense model at the target's
reference type, on the runtime as the device runs it (its context allocated and filled, llama.cpp
with flash attention). The most accurate candidate that meets every budget and is not dominated
by another that does (candidates.dominates) is verified on the full tier and gated on the
budgets. When it is the dense model quantized, the build says that nothing needs pruning.
`--sparsity` forces a pruning strength: the build ships the best artifact at it, and names
what the search would have shipped and what dominates it.

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
from gprune_edge.budgets import MB, Budgets, kv_cache_bytes, predicted_misses, predicted_size
from gprune_edge.build_config import BuildConfig
from gprune_edge.candidates import Candidate, bounds, choose, conclusion, interval_text, model_label
from gprune_edge.export import export
from gprune_edge.run_folder import RunFolder, remove_path, stage_key
from gprune_edge.targets import TargetProfile, load_target
from recovery.distill import recover
from runtime_checks import gate
from runtime_checks.report_schema import GateResult, Report
from runtime_checks.verify import verify

BUILD_FILE = "build.json"
UNTIMED_SPEEDUP = {"median": 1.0, "low": None, "high": None, "pairs": 0}  # the reference's, by definition
FINAL_FILES = (BUILD_FILE, "report.md", "report.html", "frontier.png")  # written last, removed first


@dataclass
class BuiltArtifact:
    """The artifact the build ships, verified on the full tier and gated on the budgets."""
    artifact: str
    format: str
    dtype: str
    sparsity: float
    size_bytes: int
    baseline: str  # the artifact it was measured against (relative): the reference
    baseline_size_bytes: int
    export_parity: dict
    fallbacks: list[str]
    report: str
    gate: GateResult
    budgets: list[str] = field(default_factory=list)  # each budget with the figure that meets or misses it

    def to_dict(self) -> dict:
        return {**asdict(self), "gate": self.gate.to_dict()}


@dataclass
class BuildResult:
    out: Path
    config: BuildConfig
    target: TargetProfile
    budgets: Budgets  # the target's, with the command line's in their place
    runtime: str  # what every candidate was measured on, and how (threads, context, flash attention)
    artifacts: list[BuiltArtifact]  # what the build ships
    candidates: list[Candidate]  # everything made or considered (the frontier)
    prune: dict = field(default_factory=dict)  # per pruned model: sparsity achieved, prunable parameters
    recovery: dict = field(default_factory=dict)  # per distilled model: tokens, held-out KL before/after
    note: str = ""  # the build's conclusion in a sentence (e.g. that nothing needs pruning)

    @property
    def verdict(self) -> str:
        """"pass", "fail" or "undecided" (a speed figure the machine was too noisy to settle)."""
        verdicts = {a.gate.verdict for a in self.artifacts}
        return "fail" if "fail" in verdicts else "undecided" if "undecided" in verdicts else "pass"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def skipped(self) -> list[Candidate]:
        return [c for c in self.candidates if c.verdict.startswith("skipped")]

    def to_dict(self) -> dict:
        """What build.json holds."""
        return {"config": self.config.to_dict(), "target": self.target.to_dict(), "budgets": self.budgets.to_dict(),
                "runtime": self.runtime, "verdict": self.verdict, "passed": self.passed, "note": self.note,
                "artifacts": [a.to_dict() for a in self.artifacts],
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
        result = _Build(folder, config, profile, context).search()
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
        self.budgets = Budgets.of(profile, config.budgets)
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
        """Verify the candidate against the baseline artifact; fills the candidate's figures. A quick
        check is gated here, so another budget reuses its measurements (only a speed-up floor, which
        decides how many pairs are timed, is part of its key); a full report holds its own gate."""
        runtime = self.profile.runtime_name
        keyed = thresholds if where == "reports" else thresholds.get("min_decode_speedup")
        key = stage_key("verify", self.artifact(candidate), self.artifact(baseline), settings.to_dict(), keyed,
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
        report.gate = gate.check(report, thresholds)
        _fill(candidate, report)
        candidate.report = f"{rel}/report.md"
        return report

    # the search -----------------------------------------------------------------------
    def search(self) -> BuildResult:
        forced = self.config.sparsity
        dense = {t: Candidate(0.0, *t) for t in self.profile.types}
        reference = dense[self.profile.types[0]]  # every ratio's denominator
        for c in dense.values():
            self.artifact(c)
        sparsities = [forced] if forced is not None else self.config.sparsities
        candidates = self._predict(sorted({0.0, *sparsities}), dense, reference)
        wanted = [c for c in candidates if forced is None or c.sparsity == forced]
        if all(c.verdict for c in wanted):
            raise GPruneError(_unreachable(self.budgets, wanted, forced, reference))
        settings = self.config.search_settings(self.threads, self.profile, self.budgets)
        for c in candidates:
            why = c.verdict or self._cannot_win(c, candidates)
            if why:
                c.verdict = why if why.startswith("skipped") else f"skipped: {why}"
                continue
            self._measure(c, reference, settings)
        best, instead = self._choose(candidates)
        measured = {k: getattr(best, k) for k in ("perplexity_ratio", "max_perplexity_ratio", "decode_speedup",
                                                   "decode_tok_s", "memory_mb")}
        report = self.check(best, reference, self._reference_settings(self.config.verify_settings(
            self.threads, self.profile), best is reference), self.budgets.gate(), "reports")
        final = Candidate(best.sparsity, best.format, best.dtype, size_bytes=best.size_bytes)
        _fill(final, report)
        for name, value in measured.items():  # the frontier compares candidates on one tier: the quick one
            setattr(best, name, value)
        best.verdict = "chosen: " + report.gate.verdict
        shipped = self._shipped(best, reference, report, _budget_lines(self.budgets, final))
        return BuildResult(self.out, self.config, self.profile, self.budgets,
                           _runtime(self.profile.runtime_name, settings), [shipped], candidates, self.prune_info,
                           self.recovery_info,
                           conclusion(best, instead, candidates, self.config.sparsity, self.budgets.limits()))

    def _measure(self, c: Candidate, reference: Candidate, settings) -> None:
        """Build the candidate and measure it on the quick tier; its verdict says whether it meets the budgets."""
        self.artifact(c)
        budgets = self.budgets
        if budgets.max_size_mb is not None and c.size_bytes / MB > budgets.max_size_mb:
            c.verdict = f"misses: size {c.size_bytes / MB:.4g} MB > {budgets.max_size_mb:g} MB"
            return
        report = self.check(c, reference, self._reference_settings(settings, c is reference), budgets.gate(),
                            "checks")
        misses = report.gate.failures + report.gate.undecided
        c.verdict = "misses: " + "; ".join(misses) if misses else "meets budgets"

    def _cannot_win(self, c: Candidate, candidates: list[Candidate]) -> str | None:
        """Why measuring a pruned candidate cannot change what ships: pruning only adds error, so it is
        never more accurate than the dense model of its type, nor than a less sparse model of its type."""
        if c.sparsity == 0 or self.config.sparsity is not None:
            return None
        within = [o for o in candidates if o.meets]
        best = min(within, key=lambda o: o.perplexity_ratio, default=None)
        floor = self.budgets.max_perplexity_ratio
        for o in candidates:  # the dense model of its type first, then the less sparse ones
            if (o.format, o.dtype) != (c.format, c.dtype) or o.sparsity >= c.sparsity or not o.measured:
                continue
            if floor is not None and o.max_perplexity_ratio > floor:
                return f"{o.label} already exceeds the quality floor (worst perplexity ratio " \
                       f"{o.max_perplexity_ratio:.3f} > {floor:g}); pruning only adds error"
            if best is not None and o.perplexity_ratio >= best.perplexity_ratio:
                return f"cannot beat {best.label} ({best.perplexity_ratio:.3f}): {o.label} already scored " \
                       f"{o.perplexity_ratio:.3f} and pruning only adds error"
        return None

    def _choose(self, candidates: list[Candidate]) -> tuple[Candidate, Candidate | None]:
        """What ships, and what the search would have shipped instead when --sparsity forced another."""
        forced = self.config.sparsity
        best, search = choose(candidates, forced)
        if best is None:
            at = candidates if forced is None else [c for c in candidates if c.sparsity == forced]
            raise GPruneError(_closest(self.budgets, at, forced))
        return best, (search if search is not best else None)

    # helpers --------------------------------------------------------------------------
    def _predict(self, sparsities, dense: dict, reference: Candidate) -> list[Candidate]:
        """Every candidate, in the order the search measures them (sparsity by sparsity, the target's
        types in its order), with a verdict when a prediction (or a dense artifact's exact size) rules
        it out."""
        config = load_config(self.recipe.model, self.context.trust_remote_code)
        prunable = prunable_params(config)
        embeddings = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
        kv = kv_cache_bytes(config, self.profile.context_length, self.profile.format)
        candidates = []
        for sparsity in sparsities:
            for t in self.profile.types:
                c = dense[t] if sparsity == 0 else Candidate(sparsity, *t, size_bytes=predicted_size(
                    dense[t].size_bytes, sparsity, prunable, prunable + embeddings))
                least_memory = c.size_bytes + (kv if sparsity == 0 else 0)  # pruning may shrink the cache
                miss = predicted_misses(self.budgets, c.size_bytes, least_memory, reference.size_bytes)
                if miss:
                    c.verdict = f"skipped: {miss}" + (" (predicted)" if sparsity else "")
                candidates.append(c)
        return candidates

    def _reference_settings(self, settings, is_reference: bool):
        """The reference against itself: its ratios are 1 by definition, so no timing pairs unless
        a decode floor in tok/s needs its own speed."""
        return settings.replace(speed=None) if is_reference and self.budgets.min_decode_tok_s is None else settings

    def _shipped(self, c: Candidate, baseline: Candidate, report: Report, budget_lines: list[str]) -> BuiltArtifact:
        info = self.export_info[c.label]
        return BuiltArtifact(c.artifact, c.format, c.dtype, c.sparsity, c.size_bytes, baseline.artifact,
                             baseline.size_bytes, info["parity"], info["fallbacks"], c.report, report.gate,
                             budget_lines)


def _for_runtimes(recipe, profile: TargetProfile, context: RunContext):
    """The recipe, made to keep the stock architecture where the target ships GGUF of a family
    whose llama.cpp architecture has no per-layer widths (Qwen3, Gemma 3)."""
    family = family_of(load_config(recipe.model, context.trust_remote_code))
    if family.gguf_per_layer or profile.format != "gguf":
        return recipe
    note(f"{family.model_type}: llama.cpp holds no per-layer widths for it; pruning every layer to the same "
         "widths without added biases")
    return recipe.stock_layout()


def _runtime(name: str, settings) -> str:
    threads = f"{settings.threads} thread" + ("" if settings.threads == 1 else "s")
    parts = [name, threads, f"a KV cache of {settings.context_length} tokens"]
    return ", ".join(parts + (["flash attention"] if settings.flash_attention else []))


def _summary(d: dict | None) -> dict | None:
    return d and {"median": d.median, "low": d.low, "high": d.high, "pairs": len(d.pairs)}


def _fill(c: Candidate, report: Report) -> None:
    run = report.candidates[0]
    ratios = [p.ratio for p in run.comparison.perplexity.values()]
    c.perplexity_ratio = statistics.geometric_mean(ratios) if ratios else None
    c.max_perplexity_ratio = run.comparison.max_perplexity_ratio
    c.decode_speedup = _summary(run.speed.ratio["decode_tok_s"]) if run.speed else None
    c.decode_tok_s = _summary(run.speed.candidate_decode) if run.speed else None
    if report.artifact == report.baseline:  # the reference: 1 by definition, whatever its A/A pairs say
        c.decode_speedup = dict(UNTIMED_SPEEDUP)
    c.memory_mb = run.memory.model_mb if run.memory else None
    c.accuracy_delta = run.comparison.mean_accuracy.delta


def _budget_lines(budgets: Budgets, c: Candidate) -> list[str]:
    """Each budget beside the shipped artifact's figure (full tier), and whether it meets it; a
    decode floor is compared with the low end of its interval, as the gate does."""
    low = (lambda d: d and bounds(d)[0])
    figures = [  # name, limit, figure compared (None: not measured), as shown, higher is better
        ("storage", budgets.max_size_mb, c.size_bytes / MB, f"{c.size_bytes / MB:.1f} MB", False),
        ("memory at the target's context", budgets.max_memory_mb, c.memory_mb, f"{c.memory_mb or 0:.0f} MB", False),
        ("decode tok/s", budgets.min_decode_tok_s, low(c.decode_tok_s), interval_text(c.decode_tok_s, ".3g"), True),
        ("decode speed-up", budgets.min_decode_speedup, low(c.decode_speedup), interval_text(c.decode_speedup, ".3g"),
         True),
        ("worst perplexity ratio", budgets.max_perplexity_ratio, c.max_perplexity_ratio,
         f"{c.max_perplexity_ratio or 0:.3f}", False),
    ]
    lines = []
    for name, limit, figure, shown, higher in figures:
        if limit is not None:
            ok = figure is not None and (figure >= limit if higher else figure <= limit)
            lines.append(f"{name}: {'not measured' if figure is None else shown} {'meets' if ok else 'misses'} "
                         f"{limit:g}")
    return lines


def _unreachable(budgets, candidates, sparsity, reference: Candidate) -> str:
    smallest = min(candidates, key=lambda c: c.size_bytes)
    where = f"at sparsity {sparsity:g} (drop --sparsity to let the build search)" if sparsity is not None else \
        "among the target's candidates"
    return (f"no artifact can meet {budgets.limits()} {where}: the smallest is about "
            f"{smallest.size_bytes / MB:.4g} MB ({smallest.label}), its decode bound about "
            f"{reference.size_bytes / smallest.size_bytes:.2f}x")


def _closest(budgets, candidates, sparsity: float | None = None) -> str:
    """The best figure measured for each budget, and where."""
    parts = []

    def best(figure, pick, text):
        having = [c for c in candidates if figure(c) is not None]
        if having:
            c = pick(having, key=figure)
            parts.append(f"{text.format(figure(c))} ({c.label})")
    if budgets.max_perplexity_ratio is not None:
        best(lambda c: c.max_perplexity_ratio, min, "perplexity ratio {:.3f}")
    if budgets.min_decode_tok_s is not None:
        best(lambda c: c.decode_tok_s and bounds(c.decode_tok_s)[0], max,
             "decode at least {:.1f} tok/s")
    if budgets.min_decode_speedup is not None:
        best(lambda c: c.decode_speedup and bounds(c.decode_speedup)[0], max,
             "decode at least {:.2f}x")
    if budgets.max_memory_mb is not None:
        best(lambda c: c.memory_mb, min, "memory {:.0f} MB")
    if budgets.max_size_mb is not None:
        best(lambda c: c.artifact and c.size_bytes / MB, min, "size {:.4g} MB")
    where = "" if sparsity is None else f" at sparsity {sparsity:g}"
    return (f"no candidate{where} meets {budgets.limits()}; closest: {', '.join(parts) or 'none measured'}; "
            "every candidate is listed in stages.json and measured in checks/")
