"""Several processes on one job with torch.distributed, as `torchrun` launches them (gloo on the CPU,
NCCL on CUDA): each process takes its share of the calibration windows, sums that are mergeable are
added across processes (`all_reduce_sum`), and rank 0 alone writes. One process: every call here is a
no-op, so the code is the same either way."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether this process is one of several that `torchrun` started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns the device this rank computes on
    (its own GPU when `device` is CUDA)."""
    if not launched():
        return device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the processes, in place (it visits the backend's device when it is elsewhere:
    gloo reduces on the CPU, NCCL on the GPU)."""
    if active():
        on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        if tensor.device == on:
            dist.all_reduce(tensor)
        else:
            moved = tensor.to(on)
            dist.all_reduce(moved)
            tensor.copy_(moved)
    return tensor


def barrier() -> None:
    if active():
        dist.barrier()


def share(windows: torch.Tensor) -> torch.Tensor:
    """This process's windows (rows) of a [n, seq_len] tensor: every world()-th, from its rank."""
    return windows[rank()::world()]
