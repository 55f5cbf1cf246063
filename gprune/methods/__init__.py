"""Pruning methods. Each is `plan(model, tokenizer, recipe) -> PrunePlan`: it decides
which units survive; surgery then cuts the rest."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..errors import GPruneError
from ..surgery import LayerKeep


@dataclass
class PrunePlan:
    keep: list[LayerKeep]
    diagnostics: dict = field(default_factory=dict)  # JSON-serializable, saved next to the checkpoint


# name -> module holding its `plan` function, imported on use
METHODS = {
    "gprune": "gprune.methods.gprune",
    "flap": "gprune.methods.flap",
    "wanda-sp": "gprune.methods.wanda_sp",
    "magnitude": "gprune.methods.magnitude",
    "random": "gprune.methods.random",
}


def get_method(name: str):
    if name not in METHODS:
        raise GPruneError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name]).plan
