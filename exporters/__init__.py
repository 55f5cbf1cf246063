"""Exporters: a pruned checkpoint -> a GGUF file (llama.cpp) or an ONNX decoder
(onnxruntime). Write-only: the caller (the export pipeline) owns the
destination's atomicity and verifies the artifact in its runtime.

    from exporters import check_request, load_source, write_artifact
    check_request("gguf", "q4_k_m")
    written = write_artifact(load_source("pruned/"), "gguf", "q4_k_m", Path("tmp/model.gguf"))

Modules: formats (what can be exported), source (the checked, loaded checkpoint),
artifact (result type, dispatch), gguf_artifact / onnx_artifact (one format each),
gguf_writer, gguf_vocab, gguf_quantize, onnx_export, onnx_quantize (the steps)."""

from __future__ import annotations

from exporters.artifact import WrittenArtifact, write_artifact
from exporters.formats import FORMATS, GGUF_DTYPES, ONNX_DTYPES, RUNTIMES, SERVING_RUNTIMES, check_request
from exporters.source import Source, load_source

__all__ = ["FORMATS", "GGUF_DTYPES", "ONNX_DTYPES", "RUNTIMES", "SERVING_RUNTIMES", "Source", "WrittenArtifact",
           "check_request", "load_source", "write_artifact"]
