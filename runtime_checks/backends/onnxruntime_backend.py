"""An ONNX decoder (exporters.onnx_export's layout: optimum's names, one graph for
prefill and decode, per-layer KV shapes) on onnxruntime's CPU provider."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecore.errors import GPruneError

from runtime_checks.backends.base import Backend, GenerationTiming


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        self.path = path / "model.onnx" if path.is_dir() else path
        if not self.path.is_file():
            raise GPruneError(f"{self.path}: no such file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            first = (str(e).strip().splitlines() or ["unknown error"])[0]
            raise GPruneError(f"{self.path}: onnxruntime cannot load this model ({first})") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        self._past_names = [n for n in inputs if n.startswith("past_key_values.")]
        # KV heads and head size are static per layer in the graph; batch and sequence are symbolic
        self._past_shapes = {n: (inputs[n].shape[1], inputs[n].shape[3]) for n in self._past_names}
        self._past_dtype = np.float16 if inputs[self._past_names[0]].type == "tensor(float16)" else np.float32
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._vocab = self._session.get_outputs()[0].shape[-1]

    @property
    def vocab_size(self) -> int:
        return int(self._vocab)

    def _empty_past(self) -> dict[str, np.ndarray]:
        return {n: np.zeros((1, heads, 0, dim), self._past_dtype) for n, (heads, dim) in self._past_shapes.items()}

    def _run(self, ids: list[int], past: dict[str, np.ndarray], past_len: int):
        feed = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, past_len + len(ids)), dtype=np.int64),
            "position_ids": np.arange(past_len, past_len + len(ids), dtype=np.int64)[None],
            **past,
        }
        outputs = self._session.run(None, feed)
        present = {name.replace("present.", "past_key_values."): value
                   for name, value in zip(self._output_names[1:], outputs[1:])}
        return outputs[0][0], present

    def logits(self, ids: list[int]) -> np.ndarray:
        logits, _ = self._run(list(ids), self._empty_past(), 0)
        return logits.astype(np.float32)

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
