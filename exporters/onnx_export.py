"""Export a pruned checkpoint as one ONNX decoder with a KV cache: per-layer KV
shapes, dynamic batch and sequence, attention mask and position ids, and the
input/output names of edgecore.onnx_names (optimum's). An empty past (sequence 0) is
prefill; otherwise decode."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache

from edgecore.onnx_names import (
    ATTENTION_MASK,
    DATA_FILE,
    INPUT_IDS,
    LOGITS,
    POSITION_IDS,
    input_names,
    output_names,
    past_names,
    present_names,
)
from exporters.source import Source

OPSET = 17


class DecoderWithCache(nn.Module):
    """Flat tensors in and out (what ONNX sees) around the transformers model and its DynamicCache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache()
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True, return_dict=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def example_inputs(source: Source, batch: int = 2, seq: int = 3, past: int = 4) -> tuple[torch.Tensor, ...]:
    """Non-trivial sizes (no 0 or 1) so that no dimension is specialised during tracing."""
    ids = torch.randint(0, source.config.vocab_size, (batch, seq))
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    positions = torch.arange(past, past + seq).expand(batch, seq).contiguous()
    kv = []
    for shape in source.shapes:
        kv += [torch.zeros(batch, shape.kv_heads, past, shape.head_dim)] * 2
    return (ids, mask, positions, *kv)


def dynamic_axes(n_layers: int) -> dict[str, dict[int, str]]:
    axes = {INPUT_IDS: {0: "batch_size", 1: "sequence_length"},
            ATTENTION_MASK: {0: "batch_size", 1: "total_sequence_length"},
            POSITION_IDS: {0: "batch_size", 1: "sequence_length"},
            LOGITS: {0: "batch_size", 1: "sequence_length"}}
    for i in range(n_layers):
        for name in past_names(i):
            axes[name] = {0: "batch_size", 2: "past_sequence_length"}
        for name in present_names(i):
            axes[name] = {0: "batch_size", 2: "total_sequence_length"}
    return axes


def export_onnx(source: Source, out_file: Path, dynamo: bool = False) -> None:
    """Write `out_file` (+ DATA_FILE beside it) in fp32 by TorchScript tracing. `dynamo` (torch.onnx's
    newer exporter) is kept for bench/export_smollm2.py only: on SmolLM2-135M it took 5x longer and its
    graph's decode path did not reproduce torch's greedy generation (BENCHMARKS.md)."""
    model = source.model.eval()  # loaded in float32 already
    model.config.use_cache = True
    wrapper = DecoderWithCache(model)
    n = len(source.shapes)
    inputs = example_inputs(source)
    before = set(out_file.parent.iterdir())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints are expected here
        if dynamo:
            _export_dynamo(wrapper, inputs, out_file, n)
        else:
            torch.onnx.export(wrapper, inputs, str(out_file), input_names=input_names(n),
                              output_names=output_names(n), dynamic_axes=dynamic_axes(n), opset_version=OPSET,
                              dynamo=False, external_data=True)
    _move_weights_to_one_file(out_file, before)


def _export_dynamo(wrapper, inputs, out_file: Path, n: int) -> None:
    auto = torch.export.Dim.AUTO  # let export find the relations (total = past + sequence)
    shapes = ({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto}, tuple([{0: auto, 2: auto}] * (2 * n)))
    program = torch.onnx.export(wrapper, inputs, input_names=input_names(n), output_names=output_names(n),
                                dynamic_shapes=shapes, opset_version=18, dynamo=True)
    program.save(str(out_file), external_data=True)


def _move_weights_to_one_file(out_file: Path, before: set[Path]) -> None:
    """One external data file (DATA_FILE) next to the graph, whatever the exporter produced; the
    exporter's own data files (those not in `before`) are removed, and nothing else."""
    import onnx

    model = onnx.load(str(out_file), load_external_data=True)
    stale = set(out_file.parent.iterdir()) - before | {out_file.parent / DATA_FILE}  # onnx appends to DATA_FILE
    for f in stale:
        if f != out_file and f.is_file():
            f.unlink()
    onnx.save_model(model, str(out_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)
