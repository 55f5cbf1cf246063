"""Lower-precision variants of an fp32 ONNX decoder: fp16, weight-only int4/int8
block quantization (onnxruntime's MatMulNBits), blocks dequantized when the session loads
(int8-dq / int4-dq, for onnxruntime-web), and dynamic int8 (kept only when it passes
parity; DESIGN.md warns it can wreck accuracy on this family). A tied embedding is stored
once in every variant (onnx_tied)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecore.families import Family
from edgecore.onnx_names import DATA_FILE, FOLD_DEQUANTIZE, set_session_options
from exporters.onnx_tied import (drop_unused_initializers, is_tied, output_layer, share_float_table,
                                 share_quantized_table)

BLOCK_SIZE = 32  # weights share one scale (and zero point) per 32 inputs
# Roles whose MatMuls stay 8-bit in an int4 model, as llama.cpp's q4_k_m mix gives attn_v and ffn_down more bits
EIGHT_BIT_ROLES = ("v_proj", "down_proj")


def _save(model: onnx.ModelProto, out_file: Path) -> None:
    onnx.save_model(model, str(out_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def store_tied_once(model_file: Path) -> None:
    """Rewrite an fp32 decoder in place with its tied embedding stored once."""
    model = onnx.load(str(model_file))
    if share_float_table(model):
        (model_file.parent / DATA_FILE).unlink()  # onnx would append to it
        _save(model, model_file)


def to_fp16(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_file))
    share_float_table(model)
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
    tied, logits = is_tied(model), output_layer(model).output[0]
    if bits == 4:
        eight_bit = eight_bit_matmuls(model, family)
        model = _quantize(_quantize(model, 4, nodes_to_exclude=eight_bit), 8, nodes_to_include=eight_bit)
    else:
        model = _quantize(model, bits)
    if tied:  # the embedding reads the output layer's 8-bit blocks
        share_quantized_table(model, next(n for n in model.graph.node if logits in n.output))
    _save(model, out_file)


def block_quantize(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A MatMul weight [K, N] as unsigned `bits`-bit values with a scale and an offset per BLOCK_SIZE
    inputs (asymmetric, the range always holding 0): (q [K, N], scale [ceil(K/B), N], zero point likewise),
    the layout of DequantizeLinear(axis=0, block_size=B)."""
    k, n = weight.shape
    padded = -k % BLOCK_SIZE  # a last, shorter block (widths aligned to less than BLOCK_SIZE): zeros fill it
    blocks = np.pad(weight.astype(np.float32), ((0, padded), (0, 0))).reshape(-1, BLOCK_SIZE, n)
    low, high = np.minimum(blocks.min(1), 0), np.maximum(blocks.max(1), 0)
    top = (1 << bits) - 1
    scale = np.where(high > low, (high - low) / top, 1.0).astype(np.float32)
    zero = np.clip(np.rint(-low / scale), 0, top)
    q = np.clip(np.rint(blocks / scale[:, None]) + zero[:, None], 0, top)
    return q.reshape(-1, n)[:k].astype(np.uint8), scale, zero.astype(np.uint8)


def _uint_tensor(name: str, values: np.ndarray, bits: int) -> TensorProto:
    if bits == 8:
        return numpy_helper.from_array(values, name)
    flat = values.ravel()
    flat = np.concatenate([flat, np.zeros(len(flat) % 2, np.uint8)])
    packed = flat[0::2] | (flat[1::2] << 4)  # ONNX's 4-bit packing: the first element in the low nibble
    return helper.make_tensor(name, TensorProto.UINT4, values.shape, packed.tobytes(), raw=True)


def to_dequantized_at_load(fp32_file: Path, out_file: Path, bits: int, family: Family) -> None:
    """Every MatMul weight stored in blocks of BLOCK_SIZE (`bits` bits; for 4, `eight_bit_matmuls` keep 8)
    behind a DequantizeLinear, the tied table once. With the session option FOLD_DEQUANTIZE (written into
    the model's metadata; onnxruntime does not read it from there, runtimes must pass it) onnxruntime folds
    every DequantizeLinear into fp32 weights when the session loads: an int8/int4 download that runs as
    fp32, which onnxruntime-web's WASM build runs ~15x faster than MatMulNBits (BENCHMARKS.md)."""
    from onnx import version_converter

    model = onnx.load(str(fp32_file))
    share_float_table(model)
    eight_bit = set(eight_bit_matmuls(model, family)) if bits == 4 else None
    model = version_converter.convert_version(model, 21)  # blocked DequantizeLinear and 4-bit types
    inits = {t.name: t for t in model.graph.initializer}
    dequantized, nodes = {}, []
    for node in model.graph.node:
        weight = node.input[1] if node.op_type == "MatMul" and len(node.input) > 1 else None
        if weight not in inits or weight in dequantized or len(inits[weight].dims) != 2:
            continue
        node_bits = 8 if eight_bit is None or node.name in eight_bit else bits
        q, scale, zero = block_quantize(numpy_helper.to_array(inits[weight]), node_bits)
        model.graph.initializer.extend([_uint_tensor(f"{weight}_q{node_bits}", q, node_bits),
                                        numpy_helper.from_array(scale, f"{weight}_scale"),
                                        _uint_tensor(f"{weight}_zero", zero, node_bits)])
        dequantized[weight] = f"{weight}_dequantized"
        nodes.append(helper.make_node("DequantizeLinear", [f"{weight}_q{node_bits}", f"{weight}_scale",
                                                           f"{weight}_zero"], [dequantized[weight]],
                                      name=f"{weight}/DequantizeLinear", axis=0, block_size=BLOCK_SIZE))
    for node in model.graph.node:  # every reader: the MatMul, and the embedding Gather of a tied table
        for i, name in enumerate(node.input):
            if name in dequantized:
                node.input[i] = dequantized[name]
    rest = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + rest)  # their inputs are initializers: first is a valid order
    drop_unused_initializers(model)
    set_session_options(model, FOLD_DEQUANTIZE)
    _save(model, out_file)


def to_dynamic_int8(fp32_file: Path, out_file: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the quantizer names its own data file: write beside the fp32 input (scratch), then save once more
    # with one data file under the usual name
    quantized = fp32_file.with_name(f"dynamic-int8-{fp32_file.name}")
    quantize_dynamic(str(fp32_file), str(quantized), weight_type=QuantType.QInt8, per_channel=False,
                     use_external_data_format=True, op_types_to_quantize=["MatMul"])
    _save(onnx.load(str(quantized)), out_file)
