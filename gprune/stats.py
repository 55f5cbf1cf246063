"""Mergeable per-channel activation statistics. Every field is a sum over tokens,
so statistics of two shards add up to those of the whole (calibration can be
split over processes or devices and reduced by addition)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

ACTIVE_EPS = 1e-3  # |x| above this counts as "active" (SiLU-gated inputs are rarely exactly 0)


@dataclass
class ChannelStats:
    sum: torch.Tensor  # [channels] float64
    sumsq: torch.Tensor
    sumabs: torch.Tensor
    active: torch.Tensor  # tokens where the channel is active
    count: torch.Tensor  # scalar: tokens seen

    @classmethod
    def zeros(cls, channels: int) -> "ChannelStats":
        z = lambda: torch.zeros(channels, dtype=torch.float64)  # noqa: E731
        return cls(z(), z(), z(), z(), torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor, positive: bool = False) -> None:
        """Add tokens x [..., channels]. `positive`: active means x > 0 instead of |x| > eps."""
        x = x.reshape(-1, x.shape[-1]).double()
        self.sum += x.sum(0).cpu()
        self.sumsq += x.pow(2).sum(0).cpu()
        self.sumabs += x.abs().sum(0).cpu()
        on = x > ACTIVE_EPS if positive else x.abs() > ACTIVE_EPS
        self.active += on.sum(0).double().cpu()
        self.count += x.shape[0]

    def merge(self, other: "ChannelStats") -> "ChannelStats":
        return ChannelStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count

    @property
    def variance(self) -> torch.Tensor:
        """Sample variance over tokens (FLAP's fluctuation)."""
        n = self.count
        return ((self.sumsq - self.sum.pow(2) / n) / (n - 1).clamp(min=1)).clamp(min=0)

    @property
    def l2(self) -> torch.Tensor:
        """||X_j||: L2 norm of the channel over all tokens (Wanda's activation term)."""
        return self.sumsq.sqrt()

    @property
    def rms(self) -> torch.Tensor:
        return (self.sumsq / self.count).sqrt()

    @property
    def frequency(self) -> torch.Tensor:
        return self.active / self.count

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{f.name}": getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "ChannelStats":
        return cls(*(tensors[f"{prefix}.{f.name}"] for f in fields(cls)))


def merge_all(stats: list[ChannelStats]) -> ChannelStats:
    out = stats[0]
    for s in stats[1:]:
        out = out.merge(s)
    return out
