"""Peak resident memory of a fresh process that loads and runs a model: the
figure a device's memory budget is checked against. Never system-wide memory."""

from __future__ import annotations

import json
import subprocess
import sys

from edgecore.errors import GPruneError
from runtime_checks.report_schema import MemoryPeak


def peak_rss(artifact, backend: str, threads: int | None = None, context_length: int | None = None,
             flash_attention: bool = False, new_tokens: int = 16) -> MemoryPeak:
    """The peak RSS runtime_checks.memory_probe reports from a subprocess: a prompt of 64 tokens, or
    with `context_length` one that fills the context (its KV cache counted, as a device holds it
    at that length), then `new_tokens` generated."""
    prompt_tokens = 64 if context_length is None else context_length - new_tokens
    cmd = [sys.executable, "-m", "runtime_checks.memory_probe", str(artifact), "--backend", backend,
           "--prompt-tokens", str(prompt_tokens), "--new-tokens", str(new_tokens)]
    if threads:
        cmd += ["--threads", str(threads)]
    if context_length:
        cmd += ["--context-length", str(context_length)]
    if flash_attention:
        cmd += ["--flash-attention"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GPruneError(f"memory probe failed for {artifact} on {backend}: {last}")
    return MemoryPeak.from_dict(json.loads(lines[-1]))
