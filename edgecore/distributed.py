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


def _backend_device() -> torch.device:
    """Where the backend's collectives run: gloo on the CPU, NCCL on this process's GPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the processes, in place (it visits the backend's device when it is elsewhere)."""
    if active():
        on = _backend_device()
        if tensor.device == on:
            dist.all_reduce(tensor)
        else:
            moved = tensor.to(on)
            dist.all_reduce(moved)
            tensor.copy_(moved)
    return tensor


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every process's `tensor`, in rank order (the processes may hold different numbers of
    rows; the collective needs equal shapes, so each sends its rows padded to the longest)."""
    if not active():
        return tensor
    on = _backend_device()
    count = torch.tensor([len(tensor)], device=on)
    counts = [torch.empty_like(count) for _ in range(world())]
    dist.all_gather(counts, count)
    padded = torch.zeros(max(int(c) for c in counts), *tensor.shape[1:], dtype=tensor.dtype, device=on)
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded)
    return torch.cat([part[:int(c)] for part, c in zip(parts, counts)]).to(tensor.device)


def barrier() -> None:
    if active():
        dist.barrier()


def share(windows: torch.Tensor) -> torch.Tensor:
    """This process's windows (rows) of a [n, seq_len] tensor: every world()-th, from its rank."""
    return windows[rank()::world()]
