"""Lower-precision variants of an fp32 ONNX decoder: fp16, weight-only int4/int8
block quantization (onnxruntime's MatMulNBits), and dynamic int8 (kept only when
it passes parity; DESIGN.md warns it can wreck accuracy on this family)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from edgecore.families import Family
from edgecore.onnx_names import DATA_FILE

BLOCK_SIZE = 32  # weights share one scale per 32 inputs: every hidden size / FFN width here is a multiple
# Roles whose MatMuls stay 8-bit in an int4 model, as llama.cpp's q4_k_m mix gives attn_v and ffn_down more bits
EIGHT_BIT_ROLES = ("v_proj", "down_proj")


def _save(model: onnx.ModelProto, out_file: Path) -> None:
    onnx.save_model(model, str(out_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def to_fp16(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_file))
    # keep_io_types: logits and KV cache stay float32 at the interface (same feeds as fp32);
    # norms and softmax run in fp32 where the converter's default block list keeps them.
    _save(convert_float_to_float16(model, keep_io_types=True), out_file)


def node_scope(module_path: str) -> str:
    """The fragment of a node name that marks it as produced inside the module at `module_path`
    (relative to a decoder layer): torch.onnx names nodes by module scope, "/"-separated
    ("self_attn.v_proj" -> ".../layers.0/self_attn/v_proj/MatMul")."""
    return "/" + module_path.replace(".", "/") + "/"


def eight_bit_matmuls(model: onnx.ModelProto, family: Family) -> list[str]:
    """MatMuls that stay 8-bit in an int4 model: the output layer (the last MatMul) and those of
    EIGHT_BIT_ROLES, found through the family's module layout. Measured on SmolLM2-135M (dense): KL to
    torch 0.35 -> 0.11 nats, perplexity ratio 1.41 -> 1.14, for 5% more bytes."""
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    scopes = [node_scope(family.layout[role]) for role in EIGHT_BIT_ROLES]
    return matmuls[-1:] + [n for n in matmuls[:-1] if any(s in n for s in scopes)]


def _quantize(model: onnx.ModelProto, bits: int, **nodes) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # asymmetric blocks of 32 (measured better than symmetric); accuracy_level 4: int8 activations in the kernel
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=False, accuracy_level=4,
                                     **nodes)
    quantizer.process()
    return quantizer.model.model


def to_weight_only(fp32_file: Path, out_file: Path, bits: int, family: Family) -> None:
    """MatMul weights in blocks of 32 with a scale and an integer offset each (MatMulNBits). The embedding
    Gather stays fp32. For int4, `eight_bit_matmuls` keep 8 bits."""
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # per-node INFO
    model = onnx.load(str(fp32_file))
    if bits == 4:
        eight_bit = eight_bit_matmuls(model, family)
        model = _quantize(_quantize(model, 4, nodes_to_exclude=eight_bit), 8, nodes_to_include=eight_bit)
    else:
        model = _quantize(model, bits)
    _save(model, out_file)


def to_dynamic_int8(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the quantizer names its own data file: write beside the fp32 input (scratch), then save once more
    # with one data file under the usual name
    quantized = fp32_file.with_name(f"dynamic-int8-{fp32_file.name}")
    quantize_dynamic(str(fp32_file), str(quantized), weight_type=QuantType.QInt8, per_channel=False,
                     use_external_data_format=True, op_types_to_quantize=["MatMul"])
    _save(onnx.load(str(quantized)), out_file)
