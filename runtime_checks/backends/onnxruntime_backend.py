"""An ONNX decoder (one graph for prefill and decode, per-layer KV shapes, the input and
output names of edgecore.onnx_names) on onnxruntime's CPU provider."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecore.errors import GPruneError, first_line
from edgecore.onnx_names import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    MODEL_FILE,
    POSITION_IDS,
    input_names,
    output_names,
    past_names,
    present_names,
    session_options,
)
from runtime_checks.backends.base import Backend, GenerationTiming


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        path = Path(path)
        self.path = path / MODEL_FILE if path.is_dir() else path
        if not self.path.is_file():
            raise GPruneError(f"{self.path}: no such file")
        options = ort.SessionOptions()
        graph_only = onnx.load(str(self.path), load_external_data=False)
        for key, value in session_options(graph_only).items():  # what the exporter says the graph needs
            options.add_session_config_entry(key, value)
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise GPruneError(f"{self.path}: onnxruntime cannot load this model ({first_line(e)})") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        self._layers = 0
        while past_names(self._layers)[0] in inputs:
            self._layers += 1
        missing = ([n for n in input_names(self._layers) if n not in inputs]
                   + [n for n in output_names(self._layers) if n not in outputs])
        if not self._layers or missing:
            raise GPruneError(f"{self.path}: not a decoder with a KV cache in edgecore.onnx_names' layout "
                              f"(missing {', '.join(missing) or 'past_key_values inputs'})")
        # KV heads and head size are static per layer in the graph; batch and sequence are symbolic
        self._past_shapes = {n: (inputs[n].shape[1], inputs[n].shape[3])
                             for i in range(self._layers) for n in past_names(i)}
        first_past = past_names(0)[0]
        self._past_dtype = np.float16 if inputs[first_past].type == "tensor(float16)" else np.float32
        self._outputs = output_names(self._layers)  # LOGITS, then each layer's present key and value
        self._vocab = outputs[LOGITS].shape[-1]

    @property
    def vocab_size(self) -> int:
        return int(self._vocab)

    def _empty_past(self) -> dict[str, np.ndarray]:
        return {n: np.zeros((1, heads, 0, dim), self._past_dtype) for n, (heads, dim) in self._past_shapes.items()}

    def _run(self, ids: list[int], past: dict[str, np.ndarray], past_len: int):
        """Logits [len(ids), vocab] and the next step's past (this step's present, fed back under the past names)."""
        feed = {
            INPUT_IDS: np.asarray([ids], dtype=np.int64),
            ATTENTION_MASK: np.ones((1, past_len + len(ids)), dtype=np.int64),
            POSITION_IDS: np.arange(past_len, past_len + len(ids), dtype=np.int64)[None],
            **past,
        }
        values = dict(zip(self._outputs, self._session.run(self._outputs, feed)))
        next_past = {}
        for i in range(self._layers):
            for past_name, present_name in zip(past_names(i), present_names(i)):
                next_past[past_name] = values[present_name]
        return values[LOGITS][0], next_past

    def logits(self, ids: list[int]) -> np.ndarray:
        logits, _ = self._run(list(ids), self._empty_past(), 0)
        return np.asarray(logits, dtype=np.float32)  # no copy when the graph already gives float32

    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        ids = list(ids)
        start = time.perf_counter()
        logits, past = self._run(ids, self._empty_past(), 0)
        tokens = [int(logits[-1].argmax())]
        first = time.perf_counter()
        for _ in range(max_new_tokens - 1):
            logits, past = self._run([tokens[-1]], past, len(ids) + len(tokens) - 1)
            tokens.append(int(logits[-1].argmax()))
        end = time.perf_counter()
        return GenerationTiming(tokens=tokens, prompt_tokens=len(ids), prefill_s=first - start,
                                first_token_s=first - start, decode_s=max(end - first, 1e-9))

    def close(self) -> None:
        self._session = None
