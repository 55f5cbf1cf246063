"""Where and how a run executes, as opposed to what it computes. A recipe (or a recovery or
build config) describes the model and the method and repeats on any machine; the run context
holds this machine's settings: the compute device, CPU threads, the calibration cache and
whether model code may run. A command resolves it once where it starts and passes it down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from edgecore.devices import pick_device
from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig, option


@dataclass
class RunContext(TypedConfig):
    device: str = option("auto", "Compute device: auto (CUDA when present), cpu, cuda, cuda:N")
    threads: int | None = option(None, "CPU threads for torch, export and verification [default: torch's; "
                                       "build: the target's]")
    calib_cache: str | None = option(None, "Folder for cached calibration statistics "
                                           "[default: ~/.cache/gprune-edge/calib]")
    trust_remote_code: bool = option(False, "Let model code shipped with a checkpoint run.")
    what: ClassVar[str] = "run context"

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise GPruneError(f"threads must be at least 1, got {self.threads}")

    def resolve(self) -> "RunContext":
        """This context with its device checked and made concrete ("auto" -> "cpu" or "cuda"), and
        torch's CPU threads set; resolving twice changes nothing."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return self.replace(device=str(self.torch_device()))

    def torch_device(self) -> torch.device:
        return pick_device(self.device)
