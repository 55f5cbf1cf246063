"""Tiny pruned checkpoints for the exporter tests, and the exporters layer driven as the
pipeline drives it: write an artifact, reload it in its runtime, compare with torch."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from edgecore.checkpoint import save_checkpoint
from gprune.surgery import LayerKeep, keep_all, resize

# (FFN neurons kept, KV groups kept) per layer of the 3-layer tiny model (FFN 96, 2 KV groups)
HETEROGENEOUS = [(96, [0, 1]), (64, [1]), (32, [0, 1])]
# What the tiny tokenizer knows (one token per ASCII character): prose, code, digits and whitespace runs
PARITY_TEXT = ("The history of the printing press begins in 1440, when Johannes Gutenberg combined movable type "
               "with an oil-based ink.\n\ndef fibonacci(n):\n    a, b = 0, 1\n    return [a, b][n % 2]\n\n"
               "Three   spaces,\ttabs; the answer is 42, not 41.5 or 1e-3.")
GENERATION_PROMPT = "The capital of France is"

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed (pip install 'gprune-edge[llama]')")


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


def artifact_path(directory: Path, fmt: str) -> Path:
    return Path(directory) / ("m.gguf" if fmt == "gguf" else "onnx")


def write(source, fmt: str, dtype: str, dest: Path, **options):
    """exporters.write_artifact as the pipeline calls it: for onnx, into an existing empty directory."""
    from exporters import write_artifact

    if fmt == "onnx":
        dest.mkdir(parents=True)
    return write_artifact(source, fmt, dtype, dest, **options)


@dataclass
class Checked:
    parity: dict  # runtime_checks.parity.Parity.to_dict()
    generation_matches: bool  # greedy tokens through the runtime's KV cache equal torch's
    generated: list[int]


def check_against_torch(written, source, new_tokens: int = 16) -> Checked:
    """Reload `written` (an exporters.WrittenArtifact) in its runtime: logits on PARITY_TEXT and greedy
    generation, against the torch model it was written from."""
    from runtime_checks.backends import load_backend
    from runtime_checks.backends.torch_backend import TorchBackend
    from runtime_checks.parity import compare_logits

    reference = TorchBackend.from_model(source.model, source.tokenizer, label=str(source.path))
    ids = source.tokenizer(PARITY_TEXT)["input_ids"]
    prompt = source.tokenizer(GENERATION_PROMPT)["input_ids"]
    with load_backend(written.runtime, written.path, threads=2) as candidate:
        parity = compare_logits(reference.logits(ids), candidate.logits(ids), ids)
        generated = candidate.generate(prompt, new_tokens).tokens
    expected = reference.generate(prompt, new_tokens).tokens
    return Checked(parity.to_dict(), generated == expected, generated)


def tolerance_problems(parity: dict, dtype: str) -> list[str]:
    """The export tolerance for `dtype` (runtime_checks.export_parity.TOLERANCES) that `parity` misses."""
    from runtime_checks.export_parity import TOLERANCES

    tol, problems = TOLERANCES[dtype], []
    if parity["top1_agreement"] < tol.min_top1:
        problems.append(f"top-1 agreement {parity['top1_agreement']:.3f} < {tol.min_top1}")
    if parity["kl_mean"] > tol.max_kl_mean:
        problems.append(f"mean KL {parity['kl_mean']:.2e} > {tol.max_kl_mean}")
    if abs(parity["ppl_ratio"] - 1) > tol.max_ppl_drift:
        problems.append(f"perplexity ratio {parity['ppl_ratio']:.3f} outside 1 ± {tol.max_ppl_drift}")
    return problems

needs_node = pytest.mark.skipif(__import__("shutil").which("node") is None,
                                reason="Node.js is not on PATH: the onnxruntime-web backend runs in Node "
                                       "(apt install nodejs npm)")
