"""An ONNX directory: the decoder graph and its weights (exported in fp32, then
converted to the requested type), with the tokenizer and config beside them so
that the directory is self-contained for serving."""

from __future__ import annotations

from pathlib import Path

from edgecore.onnx_names import MODEL_FILE
from edgecore.outputs import scratch_dir
from exporters import onnx_quantize
from exporters.onnx_export import export_onnx
from exporters.source import Source


def _convert(source: Source, dtype: str, fp32_file: Path, out_file: Path) -> None:
    if dtype == "fp16":
        onnx_quantize.to_fp16(fp32_file, out_file)
    elif dtype == "dynamic-int8":
        onnx_quantize.to_dynamic_int8(fp32_file, out_file)
    elif dtype in ("int8", "int4"):
        onnx_quantize.to_weight_only(fp32_file, out_file, 8 if dtype == "int8" else 4, source.family)
    else:
        raise ValueError(f"no ONNX conversion to {dtype!r}")


def write_onnx_artifact(source: Source, dtype: str, dest: Path) -> None:
    """Write `source` as a `dtype` ONNX decoder into the existing empty directory `dest`."""
    model_file = dest / MODEL_FILE
    if dtype == "fp32":
        export_onnx(source, model_file)
    else:
        with scratch_dir(dest, "fp32") as work:
            export_onnx(source, work / MODEL_FILE)
            _convert(source, dtype, work / MODEL_FILE, model_file)
    source.tokenizer.save_pretrained(dest)
    source.config.save_pretrained(dest)
