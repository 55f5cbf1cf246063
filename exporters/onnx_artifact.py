"""An ONNX directory: the decoder graph and its weights (exported in fp32, then
converted to the requested type), with the tokenizer and config beside them so
that the directory is self-contained for serving: tokenizer files that transformers 4.x and
5.x both read, head_dim explicit, and for per-layer widths the configuration code config.json
names."""

from __future__ import annotations

from pathlib import Path

from edgecore.checkpoint import save_config, save_tokenizer
from edgecore.families import has_stock_shape, stock_config
from edgecore.onnx_names import MODEL_FILE
from edgecore.outputs import scratch_dir
from edgecore.pruned_format import is_pruned_format
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
    elif dtype in ("int8-dq", "int4-dq"):
        onnx_quantize.to_dequantized_at_load(fp32_file, out_file, 8 if dtype == "int8-dq" else 4, source.family)
    else:
        raise ValueError(f"no ONNX conversion to {dtype!r}")


def write_onnx_artifact(source: Source, dtype: str, dest: Path) -> None:
    """Write `source` as a `dtype` ONNX decoder into the existing empty directory `dest`."""
    model_file = dest / MODEL_FILE
    if dtype == "fp32":
        export_onnx(source, model_file)
        onnx_quantize.store_tied_once(model_file)
    else:
        with scratch_dir(dest, "fp32") as work:
            export_onnx(source, work / MODEL_FILE)
            _convert(source, dtype, work / MODEL_FILE, model_file)
    save_tokenizer(source.tokenizer, dest)
    save_config(_serving_config(source.config), dest)


def _serving_config(config):
    """The config written beside the graph. Uniform widths get the stock family's config even with
    compensation biases: the biases live in the graph, and runtimes that read the config (optimum,
    transformers.js) know the stock model types only. The biases are noted for the record."""
    if not is_pruned_format(config) or not has_stock_shape(config):
        return config
    stock = stock_config(config)
    stock.o_proj_bias, stock.down_proj_bias = config.o_proj_bias, config.down_proj_bias
    return stock
