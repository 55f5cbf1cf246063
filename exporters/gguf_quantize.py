"""Quantized GGUF through llama.cpp's own quantizer (llama_model_quantize), with
a warning before quantizing for every tensor whose row length forces llama.cpp
to a fallback type (DESIGN.md, GGUF facts)."""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gguf

from edgecore.errors import GPruneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantType:
    file_type: gguf.LlamaFileType
    main: str  # the type most weights get
    block: int  # row length must be a multiple of this for `main`
    fallback: str  # what llama.cpp stores instead when it is not
    note: str = ""


QUANT_TYPES = {
    "q8_0": QuantType(gguf.LlamaFileType.MOSTLY_Q8_0, "q8_0", 32, "f16"),
    "q4_k_m": QuantType(gguf.LlamaFileType.MOSTLY_Q4_K_M, "q4_K", 256, "q5_0",
                        " (q8_0 where the q4_k_m mix asks for q6_K)"),
    "q5_k_m": QuantType(gguf.LlamaFileType.MOSTLY_Q5_K_M, "q5_K", 256, "q5_1",
                        " (q8_0 where the q5_k_m mix asks for q6_K)"),
    "q6_k": QuantType(gguf.LlamaFileType.MOSTLY_Q6_K, "q6_K", 256, "q8_0"),
    # below 4 bits: what a user quantizes the dense model to when it must shrink further
    "q3_k_m": QuantType(gguf.LlamaFileType.MOSTLY_Q3_K_M, "q3_K", 256, "iq4_nl"),
    "q2_k": QuantType(gguf.LlamaFileType.MOSTLY_Q2_K, "q2_K", 256, "iq4_nl"),
}
LEGACY_BLOCK = 32  # q5_0 / q5_1 / q8_0: a fallback that misses this block too goes to f16


@dataclass
class Fallback:
    tensor: str
    row_length: int
    wanted: str
    gets: str

    def __str__(self) -> str:
        return (f"{self.tensor}: row length {self.row_length} is not a multiple of {self.block_needed}, "
                f"required by {self.wanted}; llama.cpp will store it as {self.gets}")

    @property
    def block_needed(self) -> int:
        return 256 if self.wanted.endswith("_K") else 32


def predict_fallbacks(tensor_shapes: dict[str, tuple[int, ...]], dtype: str) -> list[Fallback]:
    """Tensors (GGUF names and numpy shapes: rows x row length) that llama.cpp cannot store as
    `dtype`'s main type. 1-D tensors are never quantized."""
    q = QUANT_TYPES[dtype]
    out = []
    for name, shape in tensor_shapes.items():
        if len(shape) < 2:
            continue
        row = shape[-1]
        if row % q.block == 0:
            continue
        gets = q.fallback if row % LEGACY_BLOCK == 0 and q.fallback != "f16" else "f16"
        out.append(Fallback(name, row, q.main, gets + (q.note if gets != "f16" else "")))
    return out


def warn_fallbacks(fallbacks: list[Fallback], dtype: str, strict: bool) -> None:
    if not fallbacks:
        return
    if strict:
        raise GPruneError(f"{len(fallbacks)} tensors cannot be stored as {dtype} (strict): {fallbacks[0]}; "
                          "prune with --align 256 for k-quants (32 for q8_0) or drop --strict")
    kinds = Counter(f.gets for f in fallbacks)  # one line, however many tensors: the list is at debug level
    log.warning("%d tensors cannot be stored as %s and fall back (%s), e.g. %s",
                len(fallbacks), dtype, ", ".join(f"{n} to {gets}" for gets, n in kinds.items()), fallbacks[0])
    for f in fallbacks:
        log.debug("  %s", f)


def quantize_gguf(source_gguf: Path, out: Path, dtype: str, threads: int | None = None) -> None:
    """Run llama.cpp's quantizer from an unquantized GGUF to `out`."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(QUANT_TYPES[dtype].file_type)
    params.nthread = threads or 0
    # llama.cpp repeats the fallback notices (already warned above) through this logger: keep it quiet
    llama_logger = logging.getLogger("llama-cpp-python")
    level = llama_logger.level
    llama_logger.setLevel(logging.ERROR)
    try:
        status = llama_cpp.llama_model_quantize(str(source_gguf).encode(), str(out).encode(), ctypes.byref(params))
    finally:
        llama_logger.setLevel(level)
    if status != 0:
        raise GPruneError(f"llama.cpp failed to quantize to {dtype} (status {status})")


def tensor_types(path: Path) -> dict[str, str]:
    """GGUF tensor name -> stored type, read back from the file."""
    reader = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name.lower().replace("_k", "_K") for t in reader.tensors}
