"""Tiny pruned checkpoints for the exporter tests."""

from __future__ import annotations

import torch

from edgecore.checkpoint import save_checkpoint
from gprune.surgery import LayerKeep, keep_all, resize
from tiny import tiny_model, tiny_tokenizer

# (FFN neurons kept, KV groups kept) per layer of the 3-layer tiny model (FFN 96, 2 KV groups)
HETEROGENEOUS = [(96, [0, 1]), (64, [1]), (32, [0, 1])]


def heterogeneous_keep(compensation: bool = False) -> list[LayerKeep]:
    g = torch.Generator().manual_seed(0)
    keep = [LayerKeep(torch.randperm(96, generator=g)[:w], torch.tensor(groups)) for w, groups in HETEROGENEOUS]
    if compensation:  # FLAP-style biases on o_proj / down_proj (what bias compensation adds)
        keep[0].down_bias = torch.randn(64, generator=g) * 0.1
        keep[1].o_bias = torch.randn(64, generator=g) * 0.1
    return keep


def write_tiny(path, family: str = "llama", uniform: bool = False, compensation: bool = False):
    model = tiny_model(family)
    keep = keep_all(model.config) if uniform else heterogeneous_keep(compensation)
    save_checkpoint(resize(model, keep), tiny_tokenizer(), path)
    return path
