"""Pruning methods: one typed config each (configs.py) and a planner registered for it
(registry.py). Importing this package registers every method's planner."""

from gprune.methods import flap, gprune_llm, magnitude, random, wanda_sp  # noqa: F401  (registration)
from gprune.methods.configs import METHOD_CONFIGS, METHOD_NAMES, MethodConfig, method_config
from gprune.methods.registry import PrunePlan, PruneTarget, plan, register

__all__ = ["METHOD_CONFIGS", "METHOD_NAMES", "MethodConfig", "PrunePlan", "PruneTarget", "method_config", "plan",
           "register"]
