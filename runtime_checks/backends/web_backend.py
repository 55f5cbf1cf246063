"""An ONNX decoder in onnxruntime-web's WASM backend (what a browser page runs), through a Node
process (runtime_checks/web/runner.mjs) that holds the session. Python sends token ids; Node runs
the graph, keeps the KV cache between decode steps and times them, so the figures are WASM's own."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgecore.errors import GPruneError
from edgecore.onnx_names import LOGITS, MODEL_FILE, output_names, past_names, session_options
from runtime_checks.backends.base import Backend, GenerationTiming

ONNX_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto element types the KV cache may have


def graph_interface(model_file: Path) -> dict:
    """What the runner needs to feed the graph, read from the graph alone (weights not loaded): each past
    input's (name, heads, head_dim, dtype), the output names in order, the vocabulary, the external data files."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    past = []
    while past_names(len(past) // 2)[0] in inputs:
        for name in past_names(len(past) // 2):
            t = inputs[name]
            dims = [d.dim_value for d in t.shape.dim]
            past.append([name, dims[1], dims[3], ONNX_TYPES.get(t.elem_type, "float32")])
    if not past:
        raise GPruneError(f"{model_file}: not a decoder with a KV cache in edgecore.onnx_names' layout")
    logits = next((o for o in graph.output if o.name == LOGITS), None)
    if logits is None:
        raise GPruneError(f"{model_file}: the graph has no {LOGITS} output")
    data = sorted({e.value for t in graph.initializer for e in t.external_data if e.key == "location"})
    return {"past": past, "outputs": output_names(len(past) // 2),
            "vocab": logits.type.tensor_type.shape.dim[-1].dim_value, "data": data,
            "session_options": session_options(model)}


class WebBackend(Backend):
    """onnxruntime-web, WASM, `threads` threads (default 1: a page without cross-origin isolation has one)."""

    name = "onnxruntime-web"

    @staticmethod
    def check_available() -> None:
        from runtime_checks import web

        web.node()

    def __init__(self, path, threads: int | None = None):
        from runtime_checks import web

        path = Path(path)
        model_file = path / MODEL_FILE if path.is_dir() else path
        if not model_file.is_file():
            raise GPruneError(f"{model_file}: no such file")
        interface = graph_interface(model_file)
        self._vocab = interface["vocab"]
        self.threads = threads or 1
        spec = {**interface, "threads": self.threads, "model": str(model_file)}
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty runtime cannot block on it
        self._proc = subprocess.Popen([web.node(), str(web.runner()), json.dumps(spec)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        ready = self._reply(f"{model_file}: onnxruntime-web cannot load this model")
        self.load_s = ready["load_s"]

    @property
    def vocab_size(self) -> int:
        return int(self._vocab)

    def _reply(self, failure: str) -> dict:
        line = self._proc.stdout.readline()
        if not line:  # Node exited: its last stderr line says why
            self._proc.wait()
            self._stderr.seek(0)
            last = (self._stderr.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise GPruneError(f"{failure} ({last})")
        reply = json.loads(line)
        if "error" in reply:
            raise GPruneError(f"{failure} ({reply['error']})")
        return reply

    def _ask(self, request: dict, failure: str) -> dict:
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        self._proc.stdin.flush()
        return self._reply(failure)

    def logits(self, ids: list[int]) -> np.ndarray:
        head = self._ask({"op": "logits", "ids": [int(i) for i in ids]}, "onnxruntime-web failed to run the model")
        size = head["rows"] * head["vocab"] * 4
        data = self._proc.stdout.read(size)
        if len(data) != size:
            raise GPruneError("onnxruntime-web stopped while sending logits")
        return np.frombuffer(data, dtype="<f4").reshape(head["rows"], head["vocab"])

    def generate(self, ids: list[int], max_new_tokens: int) -> GenerationTiming:
        out = self._ask({"op": "generate", "ids": [int(i) for i in ids], "max_new_tokens": max_new_tokens},
                        "onnxruntime-web failed to generate")
        return GenerationTiming(tokens=out["tokens"], prompt_tokens=len(ids), prefill_s=out["prefill_s"],
                                first_token_s=out["prefill_s"], decode_s=max(out["decode_s"], 1e-9))

    def process_memory(self) -> dict:
        """Peak RSS of the Node process that holds the model (peak_rss_mb, before_load_mb), in MB."""
        return self._ask({"op": "stats"}, "onnxruntime-web did not report its memory")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._stderr.close()
