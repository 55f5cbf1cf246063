"""Lower-precision variants of an fp32 ONNX decoder: fp16, weight-only int4/int8
block quantization (onnxruntime's MatMulNBits), and dynamic int8 (kept only when
it passes parity; DESIGN.md warns it can wreck accuracy on this family)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from .onnx_export import DATA_FILE

BLOCK_SIZE = 32  # weights share one scale per 32 inputs: every hidden size / FFN width here is a multiple


def _save(model: onnx.ModelProto, out_file: Path) -> None:
    onnx.save_model(model, str(out_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def to_fp16(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_file))
    # keep_io_types: logits and KV cache stay float32 at the interface (same feeds as fp32);
    # norms and softmax run in fp32 where the converter's default block list keeps them.
    _save(convert_float_to_float16(model, keep_io_types=True), out_file)


def _output_layer(model: onnx.ModelProto) -> str | None:
    """The MatMul producing the logits (the last MatMul before the graph output)."""
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    return matmuls[-1] if matmuls else None


def to_weight_only(fp32_file: Path, out_file: Path, bits: int) -> None:
    """MatMul weights in blocks of 32 with an integer scale offset each (asymmetric: measured
    better than symmetric on SmolLM2). The embedding Gather stays fp32. For int4 the output
    layer keeps 8 bits: 4-bit logits cost ~0.1 nats of KL more on SmolLM2-135M."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # per-node INFO
    model = onnx.load(str(fp32_file))
    output_layer = _output_layer(model)
    keep_8bit = [output_layer] if bits == 4 and output_layer else []
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=False,
                                     accuracy_level=4, nodes_to_exclude=keep_8bit)
    quantizer.process()
    model = quantizer.model.model
    if keep_8bit:
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=BLOCK_SIZE, is_symmetric=False,
                                         accuracy_level=4, nodes_to_include=keep_8bit)
        quantizer.process()
        model = quantizer.model.model
    _save(model, out_file)


def to_dynamic_int8(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_file), str(out_file), weight_type=QuantType.QInt8, per_channel=False,
                     use_external_data_format=True, op_types_to_quantize=["MatMul"])
    _save(onnx.load(str(out_file)), out_file)  # one data file under the usual name
