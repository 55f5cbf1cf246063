"""`BuildConfig`: what one build does, saved as build.json's "config" so that
`gprune-edge build --config OUT/build.json` repeats it.

It composes the configs of the stages it runs (the prune recipe, the distillation settings,
the two tiers of verify settings, the budgets) instead of restating them; the target fills in
what it decides (alignment, default sparsity). Where the build runs (device, threads, the
calibration cache) is the run context, not part of the config. Layouts of earlier versions load
(and repeat what they did); a newer version's config is refused."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig, option, read_json
from gprune.recipe import PruneRecipe
from gprune_edge.budgets import Budgets
from gprune_edge.targets import TargetProfile
from recovery.config import DistillConfig
from runtime_checks.settings import DEFAULT_DISTRIBUTIONS, SpeedSettings, VerifySettings
from runtime_checks.tasks import TASK_NAMES

BUILD_VERSION = 3  # 1: flat keys; 2: stage configs composed; 3: budgets, the search tier, resumable folder
BUILD_TASKS = ("arc_easy", "piqa", "hellaswag", "lambada")  # above chance at 135M (BENCHMARKS.md)
BUILD_DISTRIBUTIONS = ("wiki", "news", "science", "code")
# Distillation tokens a build spends unless told: what the machine does in a few minutes
# (SmolLM2-135M distils at about 70 tokens/s on 2 CPU cores: 8k tokens in 2 minutes; BENCHMARKS.md).
DEFAULT_DISTILL_TOKENS = {"cpu": 8_000, "cuda": 2_000_000}


def default_verify_settings() -> VerifySettings:
    """The check of what a build ships: the zero-shot tasks that are above chance at this scale on
    a subsample, four distributions, speed pairs for at most two minutes (undecided beats a long
    wait; `verify` itself allows five); `thorough_verify_settings` for the full evaluation."""
    return VerifySettings(tasks=BUILD_TASKS, distributions=BUILD_DISTRIBUTIONS, limit=50, max_windows=8,
                          speed=SpeedSettings(max_seconds=120))


def thorough_verify_settings() -> VerifySettings:
    """`build --thorough`: every task on 200 questions, perplexity on 16 windows."""
    return VerifySettings(tasks=TASK_NAMES, distributions=DEFAULT_DISTRIBUTIONS, limit=200, max_windows=16,
                          speed=SpeedSettings())


def search_settings() -> VerifySettings:
    """The quick tier a budget build ranks candidates by: perplexity on short windows only;
    speed and memory are switched on when a budget names them."""
    return VerifySettings(tasks=(), distributions=BUILD_DISTRIBUTIONS, limit=None, max_windows=4, seq_len=256,
                          speed=None, memory=False)


@dataclass
class BuildConfig(TypedConfig):
    """One build. `prune`, `distill`, `verify` and `search` are the stages' own configs;
    `sparsity` defaults to the target's (None), and the target's alignment
    replaces `prune.align`. With `budgets`, the build searches sparsities x artifact types for
    the most accurate artifact within them (`sparsity`, when given, fixes the sparsity)."""
    target: str = option(MISSING, "Device target: a built-in profile (browser, laptop-cpu, phone, raspberry-pi) or a "
                               "profile .json.")
    sparsity: float | None = option(None, PruneRecipe.__dataclass_fields__["sparsity"].metadata["help"]
                                    + " [default: the target's]")
    prune: PruneRecipe = field(default_factory=PruneRecipe)
    distill_tokens: int | None = option(None, "Distil the pruned model from the dense one on this many tokens (4k, "
                                              "2M; 0 = no distillation) [default: 8k on a CPU, 2M on CUDA].")
    distill: DistillConfig = field(default_factory=DistillConfig)  # its `tokens` is replaced by distill_tokens
    verify: VerifySettings = field(default_factory=default_verify_settings)  # what is shipped
    budgets: Budgets = field(default_factory=Budgets)
    search: VerifySettings = field(default_factory=search_settings)  # the candidates of a budget build
    version: int = BUILD_VERSION
    what: ClassVar[str] = "build config"
    moved: ClassVar[dict] = {"threads": "a run setting now: --threads", "calib_cache": "a run setting now"}

    def validate(self) -> None:
        if self.version > BUILD_VERSION:
            raise GPruneError(f"build config version {self.version} is newer than this gprune-edge reads "
                              f"({BUILD_VERSION}): upgrade gprune-edge")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise GPruneError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.distill_tokens is not None and self.distill_tokens < 0:
            raise GPruneError(f"distill_tokens must be 0 (no distillation) or more, got {self.distill_tokens}")

    @classmethod
    def load(cls, path: str | Path) -> "BuildConfig":
        """From a build config JSON, or from a build's build.json (its "config")."""
        data = read_json(path, "build config")
        if not isinstance(data, dict):
            raise GPruneError(f"{path}: a build config is a JSON object")
        data = data.get("config", data)
        if not isinstance(data, dict):
            raise GPruneError(f"{path}: a build config is a JSON object")
        data = _from_flat(data) if FLAT_KEYS & set(data) else data
        if isinstance(data.get("prune"), dict) and data["prune"].get("version", 3) < 3:
            data = {"distill_tokens": 0, **data}  # builds from before recovery: repeat them without it
        try:
            return cls.from_dict(data)
        except GPruneError as e:
            raise GPruneError(f"{path}: {e}") from None

    def recipe(self, profile: TargetProfile) -> PruneRecipe:
        return self.prune.replace(align=profile.align,
                                  sparsity=profile.sparsity if self.sparsity is None else self.sparsity)

    def distill_settings(self, device_type: str) -> DistillConfig | None:
        """The distillation stage's settings on a `device_type` ("cpu", "cuda") machine, None when
        it has no tokens to spend."""
        tokens = self.distill_tokens
        if tokens is None:
            tokens = DEFAULT_DISTILL_TOKENS[device_type]
        return self.distill.replace(tokens=tokens) if tokens else None

    def verify_settings(self, threads: int) -> VerifySettings:
        return _with_threads(self.verify, threads)

    def search_settings(self, threads: int) -> VerifySettings:
        """The quick tier, measuring speed and memory only when a budget names them."""
        settings = self.search.replace(memory=self.budgets.max_memory_mb is not None)
        if self.budgets.min_decode_speedup is not None and settings.speed is None:
            settings = settings.replace(speed=SpeedSettings(max_pairs=15, max_seconds=60))
        return _with_threads(settings, threads)


def _with_threads(settings: VerifySettings, threads: int) -> VerifySettings:
    speed = settings.speed and settings.speed.replace(threads=threads)
    return settings.replace(threads=threads, speed=speed)


# The first build.json layout was flat, with renamed copies of the stages' fields.
FLAT_KEYS = {"model", "method", "calib", "n_samples", "calib_seq_len", "prune_options", "tasks", "distributions",
             "limit", "windows", "eval_seq_len", "pairs"}


def _from_flat(data: dict) -> dict:
    data = dict(data)
    options = dict(data.pop("prune_options", None) or {})
    options.pop("calib_cache", None)  # a run setting, not part of the config
    prune_fields = {"model": "model", "calib": "calib", "n_samples": "n_samples", "calib_seq_len": "seq_len"}
    verify_fields = {"tasks": "tasks", "distributions": "distributions", "limit": "limit", "windows": "max_windows",
                     "eval_seq_len": "seq_len"}
    recipe = {new: data.pop(old) for old, new in prune_fields.items() if old in data}
    recipe["method"] = {"name": data.pop("method", "gprune"), **options}
    verify_settings = {new: data.pop(old) for old, new in verify_fields.items() if old in data}
    default = {**default_verify_settings().to_dict(), "limit": 100}  # version 1's default
    speed = {**SpeedSettings().to_dict(), **({"pairs": data.pop("pairs")} if "pairs" in data else {})}
    return {**data, "prune": {"version": 2, **recipe},
            "verify": {**default, **verify_settings, "speed": speed}}
