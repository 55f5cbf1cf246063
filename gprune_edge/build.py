"""`build`: everything for one device target in one call. Prune the model, export
the pruned and the dense model to every artifact the target runs, verify each
pruned artifact against the dense one on the same runtime, and gate the result on
the target's budgets. This is the one module of `gprune` that imports the
exporters and runtime_checks: it composes the pipeline."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgecore.errors import GPruneError
from edgecore.loading import DEFAULT_MODEL, resolve
from edgecore.outputs import atomic_dir, check_writable
from gprune.prune import prune
from gprune.recipe import PruneRecipe
from gprune_edge.targets import TargetProfile, load_target

BUILD_FILE = "build.json"


@dataclass
class BuildConfig:
    """One build, saved in build.json["config"]; `gprune-edge build --config build.json` repeats it."""
    target: str  # built-in target name or a profile .json
    model: str = DEFAULT_MODEL
    method: str = "gprune"
    sparsity: float | None = None  # None: the target's default
    calib: list = field(default_factory=lambda: ["wiki", "news", "code"])
    n_samples: int = 32  # calibration windows per source
    calib_seq_len: int = 256
    prune_options: dict = field(default_factory=dict)  # PruneRecipe.options
    tasks: list = field(default_factory=lambda: ["arc_easy", "piqa", "hellaswag", "lambada"])  # above chance at 135M
    distributions: list = field(default_factory=lambda: ["wiki", "news", "science", "code"])
    limit: int = 100  # questions per task
    windows: int = 8  # perplexity windows per distribution
    eval_seq_len: int = 512
    pairs: int = 7  # alternating pruned/dense speed pairs
    threads: int | None = None  # None: the target's

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BuildConfig":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise GPruneError(f"build config has unknown keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "BuildConfig":
        """From a build config JSON, or from a build's build.json (its "config")."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise GPruneError(f"{path}: cannot read build config ({e})") from None
        return cls.from_dict(data.get("config", data))

    def recipe(self, profile: TargetProfile) -> PruneRecipe:
        return PruneRecipe(model=self.model, method=self.method, align=profile.align, calib=list(self.calib),
                           sparsity=profile.sparsity if self.sparsity is None else self.sparsity,
                           n_samples=self.n_samples, seq_len=self.calib_seq_len, options=dict(self.prune_options))

    def verify_settings(self, profile: TargetProfile):
        from runtime_checks.speed import SpeedSettings
        from runtime_checks.verify import VerifySettings

        threads = self.threads or profile.threads
        return VerifySettings(tasks=tuple(self.tasks), distributions=tuple(self.distributions), limit=self.limit,
                              max_windows=self.windows, seq_len=self.eval_seq_len, threads=threads,
                              speed=SpeedSettings(pairs=self.pairs, threads=threads))


@dataclass
class BuildResult:
    out: Path
    passed: bool
    summary: dict  # what build.json holds


def artifact_name(fmt: str, dtype: str) -> str:
    return f"model-{dtype}.gguf" if fmt == "gguf" else f"onnx-{dtype}"


def _dense_dir(model: str, work: Path) -> Path:
    """A safetensors directory of the dense model (exporters read directories)."""
    source = resolve(model)
    if isinstance(source, Path) and source.is_dir():
        return source
    from edgecore.checkpoint import save_checkpoint
    from edgecore.loading import load_model

    dense, tokenizer = load_model(model)
    return save_checkpoint(dense, tokenizer, work / "dense")


def build(config: BuildConfig, out: str | Path, overwrite: bool = False) -> BuildResult:
    """Prune -> export pruned and dense -> verify each artifact with the target's gate.
    OUT gets pruned/, artifacts/, dense-artifacts/, reports/ and build.json, all at once."""
    from exporters import check_request, export
    from runtime_checks.verify import verify

    profile = load_target(config.target)
    for fmt, dtype in profile.formats:
        check_request(fmt, dtype)
    recipe, settings = config.recipe(profile), config.verify_settings(profile)
    check_writable(out, overwrite)
    threads = settings.threads
    summary = {"config": config.to_dict(), "target": dataclasses.asdict(profile), "artifacts": []}
    with atomic_dir(out, overwrite) as tmp:
        pruned = prune(recipe, tmp / "pruned")
        summary["prune"] = {"sparsity": pruned.sparsity, "prunable_before": pruned.prunable_before,
                            "prunable_after": pruned.prunable_after}
        dense_dir = _dense_dir(config.model, tmp)
        for fmt, dtype in profile.formats:
            name = artifact_name(fmt, dtype)
            candidate = export(tmp / "pruned", fmt, dtype, tmp / "artifacts" / name, threads=threads)
            baseline = export(dense_dir, fmt, dtype, tmp / "dense-artifacts" / name, threads=threads)
            report = verify(candidate.path, baseline.path, tmp / "reports" / name, settings=settings,
                            thresholds=profile.gate, tokenizer_from=dense_dir)
            summary["artifacts"].append({
                "artifact": str(Path("artifacts") / name), "format": fmt, "dtype": dtype,
                "size_bytes": candidate.size_bytes, "dense_size_bytes": baseline.size_bytes,
                "export_parity": candidate.parity, "fallbacks": candidate.fallbacks,
                "report": str(Path("reports") / name / "report.md"), "gate": report["gate"],
            })
        summary["passed"] = all(a["gate"]["passed"] for a in summary["artifacts"])
        (tmp / BUILD_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return BuildResult(Path(out), summary["passed"], summary)
