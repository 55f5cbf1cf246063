"""Exporters: a pruned checkpoint -> a GGUF file (llama.cpp) or an ONNX decoder
(onnxruntime), written atomically and verified by reloading it in its runtime.

    from exporters import export
    result = export("pruned/", "gguf", "q4_k_m", "model.gguf")
"""

from __future__ import annotations

import logging
import os
from collections import Counter
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecore.errors import GPruneError
from edgecore.outputs import atomic_dir, check_writable

log = logging.getLogger(__name__)

GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
ONNX_DTYPES = ("fp32", "fp16", "int8", "int4", "dynamic-int8")
FORMATS = {"gguf": GGUF_DTYPES, "onnx": ONNX_DTYPES}
PARITY_MODES = ("fail", "warn", "off")


@dataclass
class ExportResult:
    path: Path  # the .gguf file, or the ONNX directory (model.onnx + model.onnx_data + tokenizer)
    format: str
    dtype: str
    architecture: str  # llama.cpp architecture (gguf) or "decoder-with-past" (onnx)
    export_s: float  # writing the artifact, verification excluded
    verify_s: float
    size_bytes: int
    parity: dict  # runtime_checks.parity.Parity.to_dict()
    generation_matches: bool  # greedy tokens equal torch's on the check prompt
    fallbacks: list[str] = field(default_factory=list)  # GGUF tensors stored in a fallback type
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGUF: stored type -> tensor count

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def check_request(fmt: str, dtype: str) -> None:
    if fmt not in FORMATS:
        raise GPruneError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if dtype not in FORMATS[fmt]:
        raise GPruneError(f"unknown dtype {dtype!r} for {fmt}; choose one of: {', '.join(FORMATS[fmt])}")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def export(pruned_dir, format: str, dtype: str, out, *, strict: bool = False, overwrite: bool = False,
           parity: str = "fail", threads: int | None = None) -> ExportResult:
    """Export `pruned_dir` to `out` (a .gguf file or an ONNX directory) and verify it.

    strict: fail instead of letting llama.cpp store tensors in a fallback type.
    parity: "fail" (default) reloads the artifact in its runtime, compares it with torch and raises
    GPruneError, leaving nothing at `out`, when it is beyond the tolerance for its dtype; "warn"
    measures and only warns (for models whose own predictions are chaotic, where any rounding
    moves the argmax); "off" skips the check."""
    from exporters.source import load_source

    check_request(format, dtype)
    if parity not in PARITY_MODES:
        raise GPruneError(f"unknown parity mode {parity!r}; choose one of: {', '.join(PARITY_MODES)}")
    out = check_writable(out, overwrite)
    source = load_source(pruned_dir)
    if format == "gguf":
        return _export_gguf(source, dtype, out, strict, parity, threads)
    return _export_onnx(source, dtype, out, parity, threads)


def _finish(source, artifact: Path, fmt: str, dtype: str, runtime: str, arch: str, export_s: float,
            parity_mode: str, threads, **extra) -> ExportResult:
    from runtime_checks.export_parity import check_tolerance, verify

    start = time.perf_counter()
    parity, matches = {}, False
    if parity_mode != "off":
        checked = verify(artifact, runtime, source, dtype, threads)
        try:
            check_tolerance(checked.parity, dtype, f"{fmt} export")
        except GPruneError as e:
            if parity_mode == "fail":
                raise
            log.warning("%s (kept: --parity warn)", e)
        parity, matches = checked.parity.to_dict(), checked.generation_matches
    return ExportResult(artifact, fmt, dtype, arch, export_s, time.perf_counter() - start, _size(artifact),
                        parity, matches, **extra)


def _export_gguf(source, dtype: str, out: Path, strict: bool, parity_mode: str, threads) -> ExportResult:
    from exporters.gguf_quantize import QUANT_TYPES, predict_fallbacks, quantize_gguf, tensor_types, warn_fallbacks
    from exporters.gguf_writer import gguf_arch, gguf_tensors, write_gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        start = time.perf_counter()
        fallbacks = []
        if dtype in QUANT_TYPES:
            arch = gguf_arch(source)
            # GGUF shapes are row length last, like torch's [out, in]
            shapes = {name: tuple(t.shape) for name, t in gguf_tensors(source, arch)}
            fallbacks = predict_fallbacks(shapes, dtype)
            warn_fallbacks(fallbacks, dtype, strict)  # before quantizing; raises when strict
            write_gguf(source, work / "f32.gguf", "f32")  # f32 intermediate: one rounding only
            artifact = work / out.name
            quantize_gguf(work / "f32.gguf", artifact, dtype, threads)
            (work / "f32.gguf").unlink()
        else:
            artifact = work / out.name
            arch = write_gguf(source, artifact, dtype)
        export_s = time.perf_counter() - start
        types = tensor_types(artifact)
        stored_fallbacks = [f"{f.tensor}: row length {f.row_length} -> stored as {types.get(f.tensor, '?')} "
                            f"instead of {f.wanted}" for f in fallbacks]
        result = _finish(source, artifact, "gguf", dtype, "llama.cpp", arch, export_s, parity_mode, threads,
                         fallbacks=stored_fallbacks, tensor_types=dict(Counter(types.values())))
        os.replace(artifact, out)
        result.path = out
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_onnx(source, dtype: str, out: Path, parity_mode: str, threads) -> ExportResult:
    from exporters import onnx_quantize
    from exporters.onnx_export import export_onnx

    with atomic_dir(out, overwrite=True) as tmp:  # check_writable already enforced `overwrite`
        start = time.perf_counter()
        model_file = tmp / "model.onnx"
        if dtype == "fp32":
            export_onnx(source, model_file)
        else:
            work = Path(tempfile.mkdtemp(dir=tmp.parent, prefix=f".{out.name}.fp32-"))
            try:
                export_onnx(source, work / "model.onnx")
                convert = {"fp16": onnx_quantize.to_fp16, "dynamic-int8": onnx_quantize.to_dynamic_int8,
                           "int8": lambda a, b: onnx_quantize.to_weight_only(a, b, 8),
                           "int4": lambda a, b: onnx_quantize.to_weight_only(a, b, 4)}[dtype]
                convert(work / "model.onnx", model_file)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        export_s = time.perf_counter() - start
        # tokenizer + config beside the graph: the directory is self-contained for serving
        source.tokenizer.save_pretrained(tmp)
        source.config.save_pretrained(tmp)
        result = _finish(source, tmp, "onnx", dtype, "onnxruntime", "decoder-with-past", export_s, parity_mode,
                         threads)
    result.path = out
    return result
