"""The recipe: one typed, JSON-serializable description of a pruning run, saved as
recipe.json with every output so the run can be repeated from its folder. It holds the
model, the pruning target, the calibration text and the chosen method's typed config:

    {"version": 4, "model": "smollm2-135m", "sparsity": 0.2, ..., "method": {"name": "gprune", "lam": 1.0, ...},
     "reconstruct": true, "reconstruction": {"ridge": 1.0, "windows": 16, "target": "residual"}}

It describes the model and the method only, so a run repeats on any machine; where and how it
runs (device, threads, caches, trust_remote_code) is the run context (edgecore.run_context).
Recipes of earlier layouts are converted on load: version 3 also held the device and
trust_remote_code (dropped with a note), version 2 had no reconstruction (it loads with
"reconstruct": false, so it repeats its run), version 1 also kept the method's options apart
("method": "gprune", "metric": ..., "options": {...})."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from edgecore import __version__
from edgecore.errors import GPruneError
from edgecore.loading import DEFAULT_MODEL
from edgecore.typed_config import TypedConfig, option, read_json
from gprune.calibration import DEFAULT_SOURCES, CalibConfig, parse_sources
from gprune.methods.configs import GPruneConfig, MethodConfig, method_config
from gprune.methods.registry import PruneTarget

RECIPE_VERSION = 4
RECIPE_FILE = "recipe.json"
MAX_SEQ_LEN = 8192  # calibration windows longer than this only exhaust memory


@dataclass
class ReconstructConfig(TypedConfig):
    """Training-free reconstruction after pruning (gprune.reconstruction)."""
    ridge: float = option(1.0, "Reconstruction ridge, relative to the mean input energy; larger stays closer to "
                               "the pruned weights.")
    windows: int = 16  # calibration windows per source it fits on (at most the recipe's n_samples)
    target: Literal["residual", "sublayer"] = "residual"  # match the dense residual stream, or each projection
    bias: bool = option(True, "Fit a bias on each refitted projection. Off keeps the family's stock layout, which "
                              "llama.cpp's qwen3 and gemma3 need (with uniform widths and no bias compensation).")
    what: ClassVar[str] = "reconstruction settings"

    def validate(self) -> None:
        if self.ridge <= 0:
            raise GPruneError(f"reconstruction ridge must be positive, got {self.ridge}")
        if self.windows < 1:
            raise GPruneError(f"reconstruction windows must be at least 1, got {self.windows}")


@dataclass
class PruneRecipe(TypedConfig):
    model: str = option(DEFAULT_MODEL, "Model to prune: built-in name, HF directory, .gguf file or hub id.")
    sparsity: float = option(0.3, "Share of prunable parameters to remove, in [0, 1). Prunable means the attention "
                                  "(q, k, v, o) and FFN (gate, up, down) weights of the decoder layers; embeddings, "
                                  "norms and the output layer are kept.")
    align: int = option(32, "Round every FFN width to a multiple of this (32 for q8_0/q4_0, 256 for k-quants).")
    seed: int = option(0, "Seed for calibration windows and the random method.")
    # calibration (methods that read activations: gprune, flap, wanda-sp)
    calib: list[str] = option(None, "Calibration text sources, comma-separated: wiki, news, science, code, dialogue, "
                                    "boolq, hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or .txt/.jsonl files.",
                              default_factory=lambda: list(DEFAULT_SOURCES))
    n_samples: int = option(32, "Calibration windows per source.")
    seq_len: int = option(256, "Tokens per calibration window.")
    method: MethodConfig = field(default_factory=GPruneConfig)  # or a method name, for its defaults
    reconstruct: bool | None = option(None, "After pruning, refit the kept o_proj/down_proj weights and biases by "
                                            "ridge least squares so the pruned model reproduces the dense one on the "
                                            "calibration text (training-free, about two minutes for SmolLM2-135M on "
                                            "2 cores) [default: on for gprune, off for the others].")
    reconstruction: ReconstructConfig = field(default_factory=ReconstructConfig)
    what: ClassVar[str] = "recipe"
    moved: ClassVar[dict] = {"device": "a run setting now: --device", "trust_remote_code": "a run setting now: "
                             "--trust-remote-code"}

    def __post_init__(self):
        if isinstance(self.method, str):
            self.method = method_config(self.method)
        if self.reconstruct is None and isinstance(self.method, MethodConfig):
            self.reconstruct = self.method.reconstructs
        super().__post_init__()

    def validate(self) -> None:
        if not isinstance(self.method, MethodConfig):
            raise GPruneError(f"recipe field 'method' must be a method config, got {self.method!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise GPruneError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.align < 1:
            raise GPruneError(f"alignment must be a positive integer, got {self.align}")
        if self.n_samples < 1:
            raise GPruneError(f"n_samples (calibration windows per source) must be at least 1, got {self.n_samples}")
        if not 1 <= self.seq_len <= MAX_SEQ_LEN:
            raise GPruneError(f"seq_len (tokens per calibration window) must be in [1, {MAX_SEQ_LEN}], "
                              f"got {self.seq_len}")
        self.calib = list(parse_sources(self.calib))

    def target(self) -> PruneTarget:
        return PruneTarget(self.sparsity, self.align, self.seed)

    def stock_layout(self) -> "PruneRecipe":
        """This recipe made to keep the family's stock architecture: every layer the same widths and
        no added biases (what llama.cpp's qwen3 and gemma3 hold)."""
        options = self.method.stock_options
        if options is None:
            raise GPruneError(f"{self.method.describe()} gives every layer its own widths; a stock-layout model "
                              "(for llama.cpp's qwen3 and gemma3) needs gprune, wanda-sp, magnitude or random")
        return self.replace(method=self.method.replace(**options),
                            reconstruction=self.reconstruction.replace(bias=False))

    def calib_config(self) -> CalibConfig:
        return CalibConfig(sources=tuple(self.calib), n_samples=self.n_samples, seq_len=self.seq_len, seed=self.seed)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["method"] = {"name": self.method.name, **self.method.to_dict()}
        return {"version": RECIPE_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "gprune_edge_version": __version__}, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict, label: str | None = None) -> "PruneRecipe":
        if not isinstance(data, dict):
            raise GPruneError(f"{label or 'recipe'} must be a mapping, got {data!r}")
        data = {k: v for k, v in data.items() if k != "gprune_edge_version"}
        version = data.pop("version", 1 if V1_ONLY & set(data) or isinstance(data.get("method"), str) else RECIPE_VERSION)
        if version == 1:
            data = _from_v1(data)
        if version in (1, 2):
            data = {"reconstruct": False, **data}  # those versions had no reconstruction
        elif version not in (3, RECIPE_VERSION):
            raise GPruneError(f"recipe version {version!r} is not supported (this gprune-edge reads 1 to "
                              f"{RECIPE_VERSION})")
        method = data.pop("method", {"name": GPruneConfig.name})
        if not isinstance(method, dict) or "name" not in method:
            raise GPruneError('recipe field "method" must be a mapping with a "name", e.g. {"name": "flap"}')
        options = {k: v for k, v in method.items() if k != "name"}
        return super().from_dict({**data, "method": method_config(method["name"], options)}, label)

    @classmethod
    def load(cls, path: str | Path) -> "PruneRecipe":
        return cls.from_dict(read_json(path, "recipe"), f"recipe {path}")


V1_ONLY = {"metric", "options"}
RUNTIME_OPTIONS = {"calib_cache"}  # v1 kept the calibration cache folder among the options; it is not a setting


def _from_v1(data: dict) -> dict:
    """A recipe of the first layout (method name, top-level metric, untyped options) in the current one."""
    data = dict(data)
    name = data.pop("method", GPruneConfig.name)
    metric = data.pop("metric", None)
    options = {k: v for k, v in (data.pop("options", None) or {}).items() if k not in RUNTIME_OPTIONS}
    if name == GPruneConfig.name and metric is not None:
        options["metric"] = metric
    try:
        method_config(name, options)
    except GPruneError as e:
        raise GPruneError(f"recipe of the previous layout cannot be converted ({e}); write it as "
                          f'"method": {{"name": "{name}", OPTION: VALUE, ...}} with "version": {RECIPE_VERSION}') from None
    return {**data, "method": {"name": name, **options}}
