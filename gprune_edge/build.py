"""`build`: everything for one device target in one call. Prune the model (with
reconstruction, as the gprune recipe does by default), distill it from the dense model when
there is a token budget, export the pruned and the dense model to every artifact the target
runs, verify each pruned artifact against the dense one on the same runtime, and gate the
result on the target's budgets.

A build is described by a `BuildConfig`, which composes the configs of the stages it runs
(the prune recipe, the distillation settings and the verify settings) instead of restating
them; the target fills in what it decides (alignment, default sparsity, threads). build.json
holds the config, so `gprune-edge build --config OUT/build.json` repeats the build."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from edgecore.checkpoint import save_checkpoint
from edgecore.devices import pick_device
from edgecore.errors import GPruneError
from edgecore.loading import load_model, resolve
from edgecore.outputs import atomic_dir, claim_output
from edgecore.typed_config import TypedConfig, read_json
from exporters import check_request
from gprune.distill import recover
from gprune.distill_config import DistillConfig
from gprune.prune import prune
from gprune.recipe import PruneRecipe
from gprune_edge.export import export
from gprune_edge.targets import TargetProfile, load_target
from runtime_checks.report_schema import GateResult
from runtime_checks.settings import VerifySettings
from runtime_checks.verify import verify

BUILD_FILE = "build.json"
BUILD_TASKS = ("arc_easy", "piqa", "hellaswag", "lambada")  # above chance at 135M (BENCHMARKS.md)
BUILD_DISTRIBUTIONS = ("wiki", "news", "science", "code")
# Distillation tokens a build spends unless told: what the machine does in a few minutes
# (SmolLM2-135M distils at about 70 tokens/s on 2 CPU cores: 8k tokens in 2 minutes; BENCHMARKS.md).
DEFAULT_DISTILL_TOKENS = {"cpu": 8_000, "cuda": 2_000_000}


def default_verify_settings() -> VerifySettings:
    """What a build measures unless told otherwise: fewer windows than `verify` for time."""
    return VerifySettings(tasks=BUILD_TASKS, distributions=BUILD_DISTRIBUTIONS, limit=100, max_windows=8)


@dataclass
class BuildConfig(TypedConfig):
    """One build. `prune` and `verify` are the stages' own configs; `sparsity` and `threads`
    default to the target's (None), and the target's alignment replaces `prune.align`."""
    target: str  # built-in target name or a profile .json
    sparsity: float | None = None
    threads: int | None = None
    prune: PruneRecipe = field(default_factory=PruneRecipe)
    distill_tokens: int | None = None  # distillation after pruning; None: the machine's default, 0: none
    distill: DistillConfig = field(default_factory=DistillConfig)  # its `tokens` is replaced by distill_tokens
    verify: VerifySettings = field(default_factory=default_verify_settings)
    calib_cache: str | None = None  # where calibration statistics are cached (not a setting of the result)
    what: ClassVar[str] = "build config"

    def validate(self) -> None:
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise GPruneError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.threads is not None and self.threads < 1:
            raise GPruneError(f"threads must be at least 1, got {self.threads}")
        if self.distill_tokens is not None and self.distill_tokens < 0:
            raise GPruneError(f"distill_tokens must be 0 (no distillation) or more, got {self.distill_tokens}")

    @classmethod
    def load(cls, path: str | Path) -> "BuildConfig":
        """From a build config JSON, or from a build's build.json (its "config")."""
        data = read_json(path, "build config")
        if not isinstance(data, dict):
            raise GPruneError(f"{path}: a build config is a JSON object")
        data = data.get("config", data)
        data = _from_flat(data) if FLAT_KEYS & set(data) else data
        if isinstance(data.get("prune"), dict) and data["prune"].get("version", 3) < 3:
            data = {"distill_tokens": 0, **data}  # builds from before recovery: repeat them without it
        return cls.from_dict(data)

    def recipe(self, profile: TargetProfile) -> PruneRecipe:
        return self.prune.replace(align=profile.align,
                                  sparsity=profile.sparsity if self.sparsity is None else self.sparsity)

    def distill_settings(self, recipe: PruneRecipe) -> DistillConfig | None:
        """The distillation stage's settings, None when it has no tokens to spend."""
        tokens = self.distill_tokens
        if tokens is None:
            tokens = DEFAULT_DISTILL_TOKENS[pick_device(recipe.device).type]
        return self.distill.replace(tokens=tokens, device=recipe.device) if tokens else None

    def verify_settings(self, profile: TargetProfile) -> VerifySettings:
        threads = self.threads or profile.threads
        speed = self.verify.speed and self.verify.speed.replace(threads=threads)
        return self.verify.replace(threads=threads, speed=speed)


# The first build.json layout was flat, with renamed copies of the stages' fields.
FLAT_KEYS = {"model", "method", "calib", "n_samples", "calib_seq_len", "prune_options", "tasks", "distributions",
             "limit", "windows", "eval_seq_len", "pairs"}


def _from_flat(data: dict) -> dict:
    data = dict(data)
    options = dict(data.pop("prune_options", None) or {})
    calib_cache = options.pop("calib_cache", None)
    prune_fields = {"model": "model", "calib": "calib", "n_samples": "n_samples", "calib_seq_len": "seq_len"}
    verify_fields = {"tasks": "tasks", "distributions": "distributions", "limit": "limit", "windows": "max_windows",
                     "eval_seq_len": "seq_len"}
    recipe = {new: data.pop(old) for old, new in prune_fields.items() if old in data}
    recipe["method"] = {"name": data.pop("method", "gprune"), **options}
    verify_settings = {new: data.pop(old) for old, new in verify_fields.items() if old in data}
    default = default_verify_settings().to_dict()
    speed = {**default["speed"], **({"pairs": data.pop("pairs")} if "pairs" in data else {})}
    return {**data, "calib_cache": calib_cache, "prune": {"version": 2, **recipe},
            "verify": {**default, **verify_settings, "speed": speed}}


@dataclass
class BuiltArtifact:
    """One artifact of a build, as build.json lists it (paths relative to the build folder)."""
    artifact: str
    format: str
    dtype: str
    size_bytes: int
    dense_size_bytes: int
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
    prune: dict  # sparsity achieved, prunable parameters before/after
    artifacts: list[BuiltArtifact]
    recovery: dict | None = None  # distillation: tokens seen, held-out KL before/after

    @property
    def passed(self) -> bool:
        return all(a.gate.passed for a in self.artifacts)

    def to_dict(self) -> dict:
        """What build.json holds."""
        return {"config": self.config.to_dict(), "target": self.target.to_dict(), "prune": self.prune,
                "recovery": self.recovery, "artifacts": [a.to_dict() for a in self.artifacts], "passed": self.passed}


def artifact_name(fmt: str, dtype: str) -> str:
    return f"model-{dtype}.gguf" if fmt == "gguf" else f"onnx-{dtype}"


def _dense_dir(model: str, work: Path) -> Path:
    """A safetensors directory of the dense model (exporters read directories)."""
    source = resolve(model)
    if isinstance(source, Path) and source.is_dir():
        return source
    dense, tokenizer = load_model(model)
    return save_checkpoint(dense, tokenizer, work / "dense")


def build(config: BuildConfig, out: str | Path, overwrite: bool = False) -> BuildResult:
    """Prune -> distill -> export pruned and dense -> verify each artifact with the target's gate.
    OUT gets pruned/, recovered/ (when distilled), artifacts/, dense-artifacts/, reports/ and
    build.json, all at once."""
    profile = load_target(config.target)
    for fmt, dtype in profile.formats:
        check_request(fmt, dtype)
    recipe, settings = config.recipe(profile), config.verify_settings(profile)
    pick_device(recipe.device)
    with claim_output(out, overwrite, inputs=[recipe.model, config.target]) as out:
        return _build(config, profile, recipe, settings, out, overwrite)


def _build(config, profile, recipe, settings, out: Path, overwrite: bool) -> BuildResult:
    artifacts = []
    with atomic_dir(out, overwrite) as tmp:
        pruned = prune(recipe, tmp / "pruned", calib_cache=config.calib_cache)
        model_dir, recovery = tmp / "pruned", None
        distill = config.distill_settings(recipe)
        if distill is not None:
            recovered = recover(model_dir, distill, tmp / "recovered")
            model_dir = recovered.out
            recovery = {"tokens": recovered.history.tokens_seen, "heldout_kl_before": recovered.kl_before,
                        "heldout_kl_after": recovered.kl_after, "seconds": recovered.history.seconds}
        dense_dir = _dense_dir(recipe.model, tmp)
        for fmt, dtype in profile.formats:
            name = artifact_name(fmt, dtype)
            candidate = export(model_dir, fmt, dtype, tmp / "artifacts" / name, threads=settings.threads)
            baseline = export(dense_dir, fmt, dtype, tmp / "dense-artifacts" / name, threads=settings.threads)
            report = verify(candidate.path, baseline.path, tmp / "reports" / name, settings=settings,
                            thresholds=profile.gate, tokenizer_from=dense_dir)
            artifacts.append(BuiltArtifact(
                str(Path("artifacts") / name), fmt, dtype, candidate.size_bytes, baseline.size_bytes,
                candidate.parity, candidate.fallbacks, str(Path("reports") / name / "report.md"), report.gate))
        result = BuildResult(Path(out), config, profile, {
            "sparsity": pruned.sparsity, "prunable_before": pruned.prunable_before,
            "prunable_after": pruned.prunable_after}, artifacts, recovery)
        (tmp / BUILD_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return result
