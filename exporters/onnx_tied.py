"""A tied embedding stored once in an ONNX decoder. The exporter writes the embedding table
[V, H] (read by a Gather) and the output layer's weight [H, V] (read by the last MatMul) as two
initializers even when they are one tensor in the model; for SmolLM2-135M that is 113 MB twice.

- `share_float_table`: the Gather reads the output layer's [H, V] weight along axis 1, then a
  Transpose restores [batch, seq, H]; the output layer is untouched, so it runs as before (any
  later quantization of that weight, e.g. DequantizeLinear blocks, serves both readers).
- `share_quantized_table`: after MatMulNBits quantization of the output layer, the embedding becomes
  onnxruntime's GatherBlockQuantized over the same packed blocks, scales and zero points (a
  MatMulNBits weight [N, K/block, bytes] is row n = token n's embedding, quantized along H).

Both do nothing on an untied model (the two tensors differ)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def _initializers(model: onnx.ModelProto) -> dict:
    return {t.name: t for t in model.graph.initializer}


def _embedding_gather(model: onnx.ModelProto):
    inits = _initializers(model)
    return next((n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits
                 and len(inits[n.input[0]].dims) == 2), None)


def _replace(model: onnx.ModelProto, old, new_nodes) -> None:
    """Put `new_nodes` where `old` was, so the node list stays in topological order."""
    nodes = list(model.graph.node)
    at = nodes.index(old)
    del model.graph.node[:]
    model.graph.node.extend(nodes[:at] + list(new_nodes) + nodes[at + 1:])


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def share_float_table(model: onnx.ModelProto) -> bool:
    """Store the tied table once, as the output layer's weight (external data loaded); True if tied."""
    if not is_tied(model):
        return False
    gather, head = _embedding_gather(model), output_layer(model)
    by_hidden = gather.output[0] + "/hidden_first"
    _replace(model, gather, [
        helper.make_node("Gather", [head.input[1], gather.input[1]], [by_hidden], name=gather.name + "_tied", axis=1),
        helper.make_node("Transpose", [by_hidden], [gather.output[0]], name=gather.name + "_tied/Transpose",
                         perm=[1, 2, 0]),  # [H, batch, seq] -> [batch, seq, H]
    ])
    drop_unused_initializers(model)
    return True


def share_quantized_table(model: onnx.ModelProto, head) -> None:
    """Replace the embedding Gather by GatherBlockQuantized over the MatMulNBits output layer `head`,
    quantized from a tied weight (`is_tied` on the float graph, before quantizing)."""
    gather = _embedding_gather(model)
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    packed, scales, zero_points = head.input[1], head.input[2], head.input[3]
    vocab, hidden, bits = attrs["N"], attrs["K"], attrs["bits"]
    shape = gather.output[0] + "/rows_shape"
    model.graph.initializer.append(numpy_helper.from_array(np.array([vocab, hidden * bits // 8], np.int64), shape))
    rows = gather.output[0] + "/rows"
    _replace(model, gather, [
        helper.make_node("Reshape", [packed, shape], [rows], name=gather.name + "_tied/Reshape"),
        helper.make_node("GatherBlockQuantized", [rows, gather.input[1], scales, zero_points], [gather.output[0]],
                         name=gather.name + "_tied", domain=MS_DOMAIN, bits=bits, block_size=attrs["block_size"],
                         gather_axis=0, quantize_axis=1),
    ])
    drop_unused_initializers(model)


def output_layer(model: onnx.ModelProto):
    """The last MatMul: the output layer (logits), as the exporter writes the graph."""
    return [n for n in model.graph.node if n.op_type == "MatMul"][-1]


def is_tied(model: onnx.ModelProto) -> bool:
    """Whether the float graph's embedding table is the output layer's weight transposed."""
    gather, head = _embedding_gather(model), output_layer(model)
    inits = _initializers(model)
    if gather is None or head.input[1] not in inits:
        return False
    table, weight = numpy_helper.to_array(inits[gather.input[0]]), numpy_helper.to_array(inits[head.input[1]])
    return table.shape == weight.shape[::-1] and np.array_equal(table, weight.T)
