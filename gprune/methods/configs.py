"""One typed config per pruning method: its options, their defaults and what they mean.
A recipe holds the chosen method's config; `--option KEY=VALUE` of `gprune-edge prune`
sets its fields, and an option the method does not have is an error naming the method
and its valid options. The CLI's --help is built from these classes."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig
from edgecore.typed_config import option as _opt


@dataclass
class MethodConfig(TypedConfig):
    name: ClassVar[str]
    calibrated: ClassVar[bool]  # reads activations on calibration text
    summary: ClassVar[str]
    reconstructs: ClassVar[bool] = False  # whether prune reconstructs after this method unless told otherwise
    # options that make every layer the same widths without added biases (the family's stock
    # architecture); None where the method has no such setting
    stock_options: ClassVar[dict | None] = {}

    @classmethod
    def describe(cls) -> str:
        return f"method {cls.name!r}"

    @classmethod
    def options_help(cls) -> str:
        return "; ".join(f"{f.name}={json.dumps(f.default)} ({f.metadata['help']})" for f in fields(cls)) or "no options"


@dataclass
class GPruneConfig(MethodConfig):
    name: ClassVar[str] = "gprune"
    calibrated: ClassVar[bool] = True
    reconstructs: ClassVar[bool] = True
    summary: ClassVar[str] = "generalization-aware: multi-distribution calibration, measured-cost allocation"
    stock_options: ClassVar[dict | None] = {"uniform": True, "bias_comp": False}
    # the low-sparsity experiments of issue 14 that did not pay (BENCHMARKS.md; code last in commit ad88bef)
    retired: ClassVar[dict] = {"outlier_factor": 20.0, "chunk": 0, "layer_cap": 0.0, "gains": "local",
                               "search": 0, "propagation": False}
    metric: Literal["flap", "wanda-sp"] = _opt("flap", "base importance metric")
    sensitivity: bool = _opt(True, "use the spread of a unit's rank across datasets")
    modules: int = _opt(4, "behaviour-consistent modules per layer's FFN; 1 = one module")
    reliability: bool = _opt(True, "rank sensitive, weakly active modules by magnitude instead")
    outliers: bool = _opt(True, "always keep massive-activation neurons")
    measured: bool = _opt(True, "module sparsity from measured multi-distribution cost; false: robust "
                                "standardized scores compete globally")
    lam: float = _opt(1.0, "weight of the worst dataset in the cost; 0 = mean only")
    per_dataset: bool = _opt(True, "false pools the calibration sources into one distribution")
    bias_comp: bool = _opt(True, "FLAP bias compensation")
    uniform: bool = _opt(False, "every layer keeps the same widths (the allocation's mean KV groups, the FFN "
                                "width meeting the budget): the stock architecture, for runtimes without "
                                "per-layer widths; with bias compensation the HF checkpoint and GGUF stay "
                                "per-layer (the biases), the ONNX config is the stock one")

    def validate(self) -> None:
        if self.modules < 1:
            raise GPruneError(f"{self._where('modules')} must be at least 1, got {self.modules}")
        if self.lam < 0:
            raise GPruneError(f"{self._where('lam')} must be >= 0, got {self.lam}")


@dataclass
class FlapConfig(MethodConfig):
    name: ClassVar[str] = "flap"
    calibrated: ClassVar[bool] = True
    summary: ClassVar[str] = "FLAP baseline: fluctuation metric, one global ranking across layers"
    stock_options: ClassVar[dict | None] = None
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
    stock_options: ClassVar[dict | None] = {"bias_comp": False}
    bias_comp: bool = _opt(False, "FLAP bias compensation")


@dataclass
class MagnitudeConfig(MethodConfig):
    name: ClassVar[str] = "magnitude"
    calibrated: ClassVar[bool] = False
    summary: ClassVar[str] = "activation-free baseline: L2 norm of each unit's weights"
    stock_options: ClassVar[dict | None] = {"allocation": "uniform"}
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
