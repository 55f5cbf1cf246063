"""Planners keyed by their config type. A planner decides which units survive:
`plan(layers, config, target, calibration) -> PrunePlan` (`layers`: edgecore's `ModelLayers`), where
`config` is its own typed config
and `target` what every method is asked for (sparsity, alignment, seed); calibration is None
for methods that read no activations. Surgery then cuts the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgecore.model_layers import model_layers
from gprune.methods.configs import MethodConfig
from gprune.surgery import LayerKeep


@dataclass(frozen=True)
class PruneTarget:
    sparsity: float  # share of prunable parameters removed
    align: int  # FFN widths are a multiple of this
    seed: int = 0


@dataclass
class PrunePlan:
    keep: list[LayerKeep]
    diagnostics: dict = field(default_factory=dict)  # JSON-serializable, saved next to the checkpoint


Planner = Callable[..., PrunePlan]
_PLANNERS: dict[type[MethodConfig], Planner] = {}


def register(config_type: type[MethodConfig]):
    """Decorator: the planner for configs of `config_type`."""
    def add(planner: Planner) -> Planner:
        _PLANNERS[config_type] = planner
        return planner
    return add


def plan(model, config: MethodConfig, target: PruneTarget, calibration=None) -> PrunePlan:
    """The units `model` (in memory, or `ModelLayers`) keeps under the method `config` configures. A
    planner reads one layer at a time (`layers.each()`, `layers.weight`), so a streamed model is never
    whole in memory."""
    return _PLANNERS[type(config)](model_layers(model), config, target, calibration)
