"""Compute devices: the one a run asks for, checked before any work starts, and the one a
model sits on."""

from __future__ import annotations

import torch

from edgecore.errors import GPruneError


def pick_device(name: str) -> torch.device:
    """"auto" takes CUDA when present; "cpu", "cuda" and "cuda:N" must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GPruneError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GPruneError(f"device {name!r} asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise GPruneError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    elif device.type != "cpu":
        raise GPruneError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def model_device(model) -> torch.device:
    """The device a model's (first) parameters sit on."""
    return next(model.parameters()).device
