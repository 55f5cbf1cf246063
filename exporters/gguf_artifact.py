"""A GGUF file at a given path: unquantized types written directly; quantized types
through an unquantized intermediate that holds the checkpoint's weights exactly (one
rounding only) and llama.cpp's own quantizer, with the tensors that llama.cpp will
store in a fallback type warned about first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecore.families import gguf_arch
from edgecore.outputs import scratch_dir
from exporters.gguf_quantize import QUANT_TYPES, predict_fallbacks, quantize_gguf, tensor_types, warn_fallbacks
from exporters.gguf_writer import gguf_names, write_gguf
from exporters.source import Source


@dataclass
class WrittenGguf:
    architecture: str  # llama.cpp architecture
    fallbacks: list[str]  # tensors stored in a fallback type, as stored
    tensor_types: dict[str, int]  # stored type -> tensor count


def write_gguf_artifact(source: Source, dtype: str, dest: Path, *, strict: bool = False,
                        threads: int | None = None) -> WrittenGguf:
    """Write `source` as a `dtype` GGUF file at `dest`."""
    fallbacks = []
    if dtype in QUANT_TYPES:
        arch = gguf_arch(source.config)
        # GGUF shapes are row length last, like torch's [out, in]
        shapes = {name: source.tensors.shape(hf_name) for name, hf_name in gguf_names(source, arch).items()}
        fallbacks = predict_fallbacks(shapes, dtype)
        warn_fallbacks(fallbacks, dtype, strict)  # before quantizing; raises when strict
        exact = lossless_type(source)
        with scratch_dir(dest, exact) as work:
            write_gguf(source, work / f"{exact}.gguf", exact)
            quantize_gguf(work / f"{exact}.gguf", dest, dtype, threads)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        arch = write_gguf(source, dest, dtype)
    types = tensor_types(dest)
    stored = [f"{f.tensor}: row length {f.row_length} -> stored as {types.get(f.tensor, '?')} instead of {f.wanted}"
              for f in fallbacks]
    return WrittenGguf(arch, stored, dict(Counter(types.values())))


def lossless_type(source: Source) -> str:
    """The smallest unquantized GGUF type that holds every weight matrix of `source` exactly: bf16 or f16 when
    the checkpoint stores them so (half the disk of f32: 13 GB instead of 26 for an 8B intermediate; llama.cpp's
    quantizer widens them to the same float32 values), f32 otherwise. 1-D tensors are written f32 either way."""
    stored = {source.tensors.dtype(n) for n in source.tensors.names() if len(source.tensors.shape(n)) >= 2}
    return {torch.bfloat16: "bf16", torch.float16: "f16"}.get(stored.pop(), "f32") if len(stored) == 1 else "f32"
