"""GPU check: prune a random-weight model of SmolLM2-135M's shape with gprune on CUDA and on the CPU.

usage: TOK_DIR=DIR python bench/gpu_check.py cuda cpu
TOK_DIR holds SmolLM2's config.json and tokenizer files (copy them from ~/.cache/gprune-edge/models/smollm2-135m);
the real weights are not needed, so this runs on a GPU machine that reaches no hub."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

tok_dir = Path(os.environ["TOK_DIR"])
model_dir = Path("/tmp/rand-smollm2")
if not model_dir.exists():
    cfg = LlamaConfig.from_pretrained(tok_dir)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    m.save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(model_dir)
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
results = {}
for device in sys.argv[1:]:
    out = Path(f"/tmp/out-{device}")
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "gprune_edge", "prune", "--model", str(model_dir), "--method", "gprune", "--sparsity", "0.35",
           "--calib", "wiki,news,code", "--device", device, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GPRUNE_CACHE": f"/tmp/cache-{device}"})
    print(device, "rc", done.returncode, "wall", round(time.perf_counter() - t, 1), done.stdout[-400:], done.stderr[-1500:])
    if done.returncode == 0:
        summary = json.loads((out / "prune_summary.json").read_text())
        results[device] = [l["ffn"] for l in summary["layers"]], [l["kv_heads"] for l in summary["layers"]], summary.get("seconds"), summary["diagnostics"].get("timing")
        print(device, json.dumps(results[device])[:600])
if len(results) == 2:
    a, b = results.values()
    print("same widths on both devices:", a[0] == b[0] and a[1] == b[1])
    print("layer widths differ in", sum(x != y for x, y in zip(a[0], b[0])), "layers")
