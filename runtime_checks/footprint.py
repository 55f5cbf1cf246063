"""What an artifact weighs: bytes on disk and parameter count, read from file headers
(nothing is loaded)."""

from __future__ import annotations

from pathlib import Path

from edgecore.loading import resolve
from runtime_checks.report_schema import Footprint

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".onnx", ".onnx_data", ".data")


def weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _safetensors_params(files: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(f, framework="pt") as st:
            for name in st.keys():
                shape = st.get_slice(name).get_shape()
                total += int(_product(shape))
    return total


def _gguf_params(path: Path) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(path).tensors)


def _product(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def parameter_count(path: Path) -> int | None:
    """Parameters stored in the artifact (tied embeddings counted once); None where unknown (ONNX)."""
    files = weight_files(path)
    if any(f.suffix == ".gguf" for f in files):
        return _gguf_params(next(f for f in files if f.suffix == ".gguf"))
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    return _safetensors_params(safetensors) if safetensors else None


def footprint(artifact) -> Footprint:
    """Size on disk and parameter count of an artifact: a path, a built-in name or a hub id."""
    path = Path(str(artifact)).expanduser()
    if not path.exists():  # a built-in name or hub id: resolved the way loading does
        path = Path(resolve(str(artifact)))
    files = weight_files(path)
    size = sum(f.stat().st_size for f in files)
    return Footprint(path=str(path), file_bytes=size, file_mb=size / 2**20, parameters=parameter_count(path),
                     files=[f.name for f in files])
