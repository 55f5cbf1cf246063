"""Pruning methods. Each module holds `plan(model, recipe, calibration) -> PrunePlan`: it
decides which units survive (calibration is None for methods that read no activations);
surgery then cuts the rest. A method's options are its typed config (configs.py)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from gprune.methods.configs import METHOD_CONFIGS, METHOD_NAMES, MethodConfig, method_config
from gprune.surgery import LayerKeep


@dataclass
class PrunePlan:
    keep: list[LayerKeep]
    diagnostics: dict = field(default_factory=dict)  # JSON-serializable, saved next to the checkpoint


# name -> module holding its `plan` function, imported on use
PLANNERS = {
    "gprune": "gprune.methods.gprune_llm",
    "flap": "gprune.methods.flap",
    "wanda-sp": "gprune.methods.wanda_sp",
    "magnitude": "gprune.methods.magnitude",
    "random": "gprune.methods.random",
}
assert set(PLANNERS) == set(METHOD_CONFIGS)


def planner(config: MethodConfig):
    """The `plan` function of the method `config` configures."""
    return importlib.import_module(PLANNERS[config.name]).plan


__all__ = ["METHOD_CONFIGS", "METHOD_NAMES", "MethodConfig", "PrunePlan", "method_config", "planner"]
