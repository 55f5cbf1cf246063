"""`BuildConfig`: what one build does, saved as build.json's "config" so that
`gprune-edge build --config OUT/build.json` repeats it.

It composes the configs of the stages it runs (the prune recipe, the distillation settings,
the two tiers of verify settings, the budgets that replace the target's) instead of restating
them; the target fills in what it decides (alignment, context length, threads). Where the build
runs (device, threads, the calibration cache) is the run context, not part of the config. Layouts
of earlier versions load (and repeat what they did); a newer version's config is refused."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import ClassVar

from edgecore.errors import GPruneError, note
from edgecore.typed_config import TypedConfig, option, read_json
from gprune.recipe import PruneRecipe
from gprune_edge.budgets import Budgets
from gprune_edge.targets import TargetProfile
from recovery.config import DistillConfig
from runtime_checks.settings import DEFAULT_DISTRIBUTIONS, SpeedSettings, VerifySettings
from runtime_checks.tasks import TASK_NAMES

BUILD_VERSION = 4  # 1: flat keys; 2: stage configs composed; 3: budgets, the search tier; 4: always a search
DEFAULT_SPARSITIES = (0.1, 0.2, 0.35, 0.5)  # the pruned candidates a search considers, beside the dense model
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
    """The quick tier the search ranks candidates by: perplexity on short windows and decode speed
    in at most a minute of pairs; memory is measured when a budget names it."""
    return VerifySettings(tasks=(), distributions=BUILD_DISTRIBUTIONS, limit=None, max_windows=4, seq_len=256,
                          speed=SpeedSettings(max_pairs=15, max_seconds=60), memory=False)


@dataclass
class BuildConfig(TypedConfig):
    """One build: a search of `sparsities` (and the dense model) x the target's artifact types for
    the most accurate artifact within the target's budgets, each replaced by `budgets` where set.
    `sparsity` forces one pruning strength instead. `prune`, `distill`, `verify` and `search` are
    the stages' own configs; the target's alignment replaces `prune.align`."""
    target: str = option(MISSING, "Device target: a built-in profile (browser, laptop-cpu, phone, raspberry-pi) or a "
                               "profile .json.")
    sparsity: float | None = option(None, "Force this pruning strength instead of searching (0: the dense model "
                                          "only); the build then names what the search would have shipped.")
    sparsities: list[float] = field(default_factory=lambda: list(DEFAULT_SPARSITIES))
    prune: PruneRecipe = field(default_factory=PruneRecipe)
    distill_tokens: int | None = option(None, "Distil the pruned model from the dense one on this many tokens (4k, "
                                              "2M; 0 = no distillation) [default: 8k on a CPU, 2M on CUDA].")
    distill: DistillConfig = field(default_factory=DistillConfig)  # its `tokens` is replaced by distill_tokens
    verify: VerifySettings = field(default_factory=default_verify_settings)  # what is shipped
    budgets: Budgets = field(default_factory=Budgets)  # None: the target's figure
    search: VerifySettings = field(default_factory=search_settings)  # the quick tier the candidates are ranked on
    version: int = BUILD_VERSION
    what: ClassVar[str] = "build config"
    moved: ClassVar[dict] = {"threads": "a run setting now: --threads", "calib_cache": "a run setting now"}

    def validate(self) -> None:
        if self.version > BUILD_VERSION:
            raise GPruneError(f"build config version {self.version} is newer than this gprune-edge reads "
                              f"({BUILD_VERSION}): upgrade gprune-edge")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise GPruneError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if not self.sparsities or any(not 0.0 < s < 1.0 for s in self.sparsities):
            raise GPruneError(f"sparsities must be values in (0, 1), got {self.sparsities}")
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
        budgets = data.get("budgets") or {}
        if data.get("version", 1) < 4 and data.get("sparsity") is None and not any(budgets.values()):
            note(f"{path}: a build without budgets from before version 4 pruned at its target's sparsity, 0.2 in "
                 "every built-in target: repeated with --sparsity 0.2")
            data = {**data, "sparsity": 0.2}
        data = {**data, "version": max(data.get("version", 1), BUILD_VERSION)}  # converted: the newer layout
        try:
            return cls.from_dict(data)
        except GPruneError as e:
            raise GPruneError(f"{path}: {e}") from None

    def recipe(self, profile: TargetProfile) -> PruneRecipe:
        """The prune recipe at the target's alignment (the sparsity is set per candidate)."""
        return self.prune.replace(align=profile.align)

    def distill_settings(self, device_type: str) -> DistillConfig | None:
        """The distillation stage's settings on a `device_type` ("cpu", "cuda") machine, None when
        it has no tokens to spend."""
        tokens = self.distill_tokens
        if tokens is None:
            tokens = DEFAULT_DISTILL_TOKENS[device_type]
        return self.distill.replace(tokens=tokens) if tokens else None

    def verify_settings(self, threads: int, profile: TargetProfile) -> VerifySettings:
        """The full tier, on the runtime as the target runs it."""
        return _on_target(self.verify, threads, profile)

    def search_settings(self, threads: int, profile: TargetProfile, budgets: Budgets) -> VerifySettings:
        """The quick tier, measuring memory when a budget names it, and speed when a decode floor
        needs it even if `search` leaves it out (null: candidates are then compared without it)."""
        settings = self.search.replace(memory=budgets.max_memory_mb is not None)
        if settings.speed is None and budgets.timed:
            settings = settings.replace(speed=search_settings().speed)
        return _on_target(settings, threads, profile)


def _on_target(settings: VerifySettings, threads: int, profile: TargetProfile) -> VerifySettings:
    """`settings` on `threads`, with the target's context allocated (and filled by the memory probe) and
    llama.cpp's flash attention, which keeps a per-layer-KV model's V cache at each layer's width."""
    speed = settings.speed and settings.speed.replace(threads=threads)
    return settings.replace(threads=threads, speed=speed, context_length=profile.context_length,
                            flash_attention=profile.format == "gguf")


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
