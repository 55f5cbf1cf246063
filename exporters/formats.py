"""What can be exported: formats, their dtypes and the runtime that serves each."""

from __future__ import annotations

from edgecore.errors import GPruneError

GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k")
ONNX_DTYPES = ("fp32", "fp16", "int8", "int4", "int8-dq", "int4-dq", "dynamic-int8")
FORMATS = {"gguf": GGUF_DTYPES, "onnx": ONNX_DTYPES}
RUNTIMES = {"gguf": "llama.cpp", "onnx": "onnxruntime"}  # the runtime that serves each format by default
# every runtime that serves each format: an export is checked on RUNTIMES', a target may name any of these
SERVING_RUNTIMES = {"gguf": ("llama.cpp",), "onnx": ("onnxruntime", "onnxruntime-web")}


def check_request(fmt: str, dtype: str) -> None:
    if fmt not in FORMATS:
        raise GPruneError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if dtype not in FORMATS[fmt]:
        raise GPruneError(f"unknown dtype {dtype!r} for {fmt}; choose one of: {', '.join(FORMATS[fmt])}")
