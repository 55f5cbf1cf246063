"""The ONNX decoder's interface: input and output names, shared by the exporter that writes
the graph and the runtime backend that feeds it. optimum's names, so that uniform-width
exports also load in optimum's ORTModelForCausalLM. An empty past (sequence length 0) is
prefill; otherwise decode."""

from __future__ import annotations

import json

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"  # external weights beside the graph
INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS = "input_ids", "attention_mask", "position_ids", "logits"


def past_names(layer: int) -> tuple[str, str]:
    """Inputs holding layer `layer`'s cached keys and values."""
    return f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    """Outputs holding layer `layer`'s keys and values after this step."""
    return f"present.{layer}.key", f"present.{layer}.value"


def input_names(n_layers: int) -> list[str]:
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS] + [n for i in range(n_layers) for n in past_names(i)]


def output_names(n_layers: int) -> list[str]:
    return [LOGITS] + [n for i in range(n_layers) for n in present_names(i)]


# Session options an artifact needs, written into the model's metadata (metadata_props) under
# SESSION_OPTIONS_KEY by the exporter and applied by the runtime backends (onnxruntime reads no such
# key itself: a page or app that serves the artifact passes them when it creates the session).
SESSION_OPTIONS_KEY = "gprune-edge.session_options"
# fold DequantizeLinear of weights into fp32 at load instead of fusing it into MatMulNBits
FOLD_DEQUANTIZE = {"session.disable_quant_qdq": "1"}


def set_session_options(model, options: dict[str, str]) -> None:
    """Record `options` in an onnx.ModelProto's metadata."""
    entry = model.metadata_props.add()
    entry.key, entry.value = SESSION_OPTIONS_KEY, json.dumps(options)


def session_options(model) -> dict[str, str]:
    """The options recorded in an onnx.ModelProto's metadata (the graph alone suffices: load it with
    load_external_data=False)."""
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props.get(SESSION_OPTIONS_KEY, "{}"))
