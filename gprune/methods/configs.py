"""One typed config per pruning method: its options, their defaults and what they mean.
A recipe holds the chosen method's config; `--option KEY=VALUE` and the ablation flags
of `gprune-edge prune` set its fields, and an option the method does not have is an
error naming the method and its valid options. Light on purpose (no torch): the CLI's
--help is built from these classes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class MethodConfig(TypedConfig):
    name: ClassVar[str]
    calibrated: ClassVar[bool]  # reads activations on calibration text
    summary: ClassVar[str]
    reconstructs: ClassVar[bool] = False  # whether prune reconstructs after this method unless told otherwise

    @classmethod
    def describe(cls) -> str:
        return f"method {cls.name!r}"

    def needs_windows(self) -> bool:
        """Whether the method runs the whole model on calibration windows (not only layer statistics)."""
        return False

    @classmethod
    def options_help(cls) -> str:
        return "; ".join(f"{f.name}={json.dumps(f.default)} ({f.metadata['help']})" for f in fields(cls)) or "no options"


@dataclass
class GPruneConfig(MethodConfig):
    name: ClassVar[str] = "gprune"
    calibrated: ClassVar[bool] = True
    reconstructs: ClassVar[bool] = True
    summary: ClassVar[str] = "generalization-aware: multi-distribution calibration, measured-cost allocation"
    metric: Literal["flap", "wanda-sp"] = _opt("flap", "base importance metric")
    sensitivity: bool = _opt(True, "use the spread of a unit's rank across datasets")
    modules: int = _opt(4, "behaviour-consistent modules per layer's FFN; 1 = one module")
    reliability: bool = _opt(True, "rank sensitive, weakly active modules by magnitude instead")
    outliers: bool = _opt(True, "always keep massive-activation neurons")
    outlier_factor: float = _opt(20.0, "how far above its layer's median a neuron's RMS makes it an outlier")
    measured: bool = _opt(True, "module sparsity from measured multi-distribution cost; false: robust "
                                "standardized scores compete globally")
    lam: float = _opt(1.0, "weight of the worst dataset in the cost; 0 = mean only")
    per_dataset: bool = _opt(True, "false pools the calibration sources into one distribution")
    bias_comp: bool = _opt(True, "FLAP bias compensation")
    chunk: int = _opt(0, "FFN neurons per greedy step; 0 = the alignment")
    layer_cap: float = _opt(0.0, "no layer's FFN or attention gives up more than this multiple of the global "
                                 "sparsity (0 = no cap)")
    gains: Literal["local", "measured", "fisher"] = _opt(
        "local", "what turns a sublayer's layer-local cost into loss: local (none: the relative change of the "
                 "layer's output), measured (each sublayer's probe removal: the KL at the model's output over its "
                 "local change; minutes more for SmolLM2 on a 2-core CPU), fisher (an isotropic "
                 "empirical-Fisher estimate)")
    search: int = _opt(0, "generations of a search over per-layer widths, each candidate priced by the KL at the "
                          "model's output on calibration windows, starting from the greedy's (0 = off; ~20 s a "
                          "generation for SmolLM2-135M on a 2-core CPU)")
    uniform: bool = _opt(False, "every layer keeps the same widths (the allocation's mean KV groups, the FFN "
                                "width meeting the budget): the stock architecture, for runtimes without "
                                "per-layer widths; with bias compensation the HF checkpoint and GGUF stay "
                                "per-layer (the biases), the ONNX config is the stock one")

    def needs_windows(self) -> bool:
        return self.gains != "local" or self.search > 0

    @classmethod
    def from_dict(cls, data: dict, label: str | None = None):
        if isinstance(data, dict) and isinstance(data.get("propagation"), bool):  # recipes before measured gains
            data = {k: v for k, v in data.items() if k != "propagation"} | {
                "gains": "fisher" if data["propagation"] else "local"}
        return super().from_dict(data, label)

    def validate(self) -> None:
        if self.layer_cap < 0:
            raise GPruneError(f"{self._where('layer_cap')} must be >= 0 (0 = no cap), got {self.layer_cap}")
        if self.search < 0:
            raise GPruneError(f"{self._where('search')} must be >= 0 (0 = off), got {self.search}")
        if self.search and (self.uniform or not self.measured):
            raise GPruneError(f"{self.describe()}: search refines the measured-cost allocation's per-layer widths; "
                              "it needs measured=true and uniform=false")
        if self.modules < 1:
            raise GPruneError(f"{self._where('modules')} must be at least 1, got {self.modules}")
        if self.lam < 0 or self.outlier_factor <= 0 or self.chunk < 0:
            raise GPruneError(f"{self.describe()}: lam and chunk must be >= 0 and outlier_factor > 0")


@dataclass
class FlapConfig(MethodConfig):
    name: ClassVar[str] = "flap"
    calibrated: ClassVar[bool] = True
    summary: ClassVar[str] = "FLAP baseline: fluctuation metric, one global ranking across layers"
    bias_comp: bool = _opt(True, "add removed channels' mean output back as a bias")
    robust: bool = _opt(False, "standardize scores by median/MAD instead of mean/std")
    attention: Literal["channel-mean", "group-sum"] = _opt(
        "channel-mean", "how KV groups are scored against FFN neurons: channel-mean as FLAP's published code "
                        "(squared channel metric, standardized per layer over o_proj channels, averaged per group); "
                        "group-sum standardizes the groups' summed scores (gprune-edge 0.1; over-prunes attention)")


@dataclass
class WandaSpConfig(MethodConfig):
    name: ClassVar[str] = "wanda-sp"
    calibrated: ClassVar[bool] = True
    summary: ClassVar[str] = "structured Wanda baseline: |W| x ||X||, the same share from every layer"
    bias_comp: bool = _opt(False, "FLAP bias compensation")


@dataclass
class MagnitudeConfig(MethodConfig):
    name: ClassVar[str] = "magnitude"
    calibrated: ClassVar[bool] = False
    summary: ClassVar[str] = "activation-free baseline: L2 norm of each unit's weights"
    allocation: Literal["global", "uniform"] = _opt("global", "FFN neurons compete across layers, or every "
                                                              "layer gives up the same share")


@dataclass
class RandomConfig(MethodConfig):
    name: ClassVar[str] = "random"
    calibrated: ClassVar[bool] = False
    summary: ClassVar[str] = "floor: units drawn at random (seeded), the same share from every layer"


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    c.name: c for c in (GPruneConfig, FlapConfig, WandaSpConfig, MagnitudeConfig, RandomConfig)}
METHOD_NAMES = tuple(METHOD_CONFIGS)


def method_config(name: str, options: dict | None = None) -> MethodConfig:
    """The typed config of method `name` with `options` (unknown or mistyped ones are errors)."""
    if name not in METHOD_CONFIGS:
        raise GPruneError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")
    return METHOD_CONFIGS[name].from_dict(dict(options or {}))
