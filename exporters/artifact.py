"""Write one artifact of a loaded source: the result type and the dispatch by format.

The caller owns the destination: `write_artifact` writes at `dest` and neither
renames it into place nor verifies it (the pipeline wraps both around this)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exporters.formats import RUNTIMES, check_request
from exporters.source import Source

ONNX_ARCHITECTURE = "decoder-with-past"


@dataclass
class WrittenArtifact:
    path: Path  # the .gguf file, or the ONNX directory (model.onnx + model.onnx_data + tokenizer + config)
    format: str
    dtype: str
    architecture: str  # llama.cpp architecture (gguf) or "decoder-with-past" (onnx)
    runtime: str  # the runtime that serves it (RUNTIMES)
    export_s: float  # writing the artifact
    size_bytes: int
    fallbacks: list[str] = field(default_factory=list)  # GGUF tensors stored in a fallback type
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGUF: stored type -> tensor count

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_artifact(source: Source, fmt: str, dtype: str, dest: Path, *, strict: bool = False,
                   threads: int | None = None) -> WrittenArtifact:
    """Write `source` as `fmt`/`dtype` at `dest`: for gguf the .gguf file, for onnx an existing empty
    directory. Scratch files go in a temporary directory beside `dest`, always removed.

    strict: fail (before quantizing) instead of letting llama.cpp store tensors in a fallback type.
    threads: llama.cpp quantizer threads (None: its default)."""
    check_request(fmt, dtype)
    dest = Path(dest)
    start = time.perf_counter()
    if fmt == "gguf":
        from exporters.gguf_artifact import write_gguf_artifact

        written = write_gguf_artifact(source, dtype, dest, strict=strict, threads=threads)
        export_s = time.perf_counter() - start
        return WrittenArtifact(dest, fmt, dtype, written.architecture, RUNTIMES[fmt], export_s, size_bytes(dest),
                               written.fallbacks, written.tensor_types)
    from exporters.onnx_artifact import write_onnx_artifact

    write_onnx_artifact(source, dtype, dest)
    export_s = time.perf_counter() - start
    return WrittenArtifact(dest, fmt, dtype, ONNX_ARCHITECTURE, RUNTIMES[fmt], export_s, size_bytes(dest))
