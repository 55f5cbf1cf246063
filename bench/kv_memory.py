"""Memory of a GGUF on llama.cpp at a context, with and without flash attention: the figure a
build's memory budget is checked against (runtime_checks.memory: what loading the model and
filling the context adds to a fresh process).

Without flash attention llama.cpp stores the V cache transposed, and a model whose layers keep
different numbers of KV heads (GPrune's per-layer widths: llama.cpp's `deci`) gets every layer's
V cache padded to the widest; with it, each layer's cache has its own width. This measures the
dense SmolLM2-135M and its GPrune 30% model (per-layer heads), both q8_0, at two contexts.

    python bench/kv_memory.py --work /tmp/kv   (about 4 minutes on 2 cores; appends to
    bench/results/kv_memory.jsonl)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import recipe

from edgecore.loading import load_config, resolve
from gprune.prune import prune
from gprune_edge.export import export
from runtime_checks.memory import peak_rss

RESULTS = Path(__file__).parent / "results" / "kv_memory.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    dense_dir, pruned_dir = resolve("smollm2-135m"), args.work / "pruned30"  # the built-in: a cached directory
    if not pruned_dir.exists():
        prune(recipe("gprune", 0.3), pruned_dir)
    config = load_config(str(pruned_dir))
    heads = getattr(config, "num_key_value_heads_per_layer", None) or [config.num_key_value_heads] * \
        config.num_hidden_layers
    rows = []
    for label, model_dir in (("dense", dense_dir), ("gprune30", pruned_dir)):
        gguf = args.work / f"{label}-q8_0.gguf"
        if not gguf.exists():
            export(model_dir, "gguf", "q8_0", gguf, threads=2)
        for context in args.contexts:
            for flash in (False, True):
                peak = peak_rss(gguf, "llama.cpp", threads=2, context_length=context, flash_attention=flash)
                row = {"model": label, "file_mb": gguf.stat().st_size / 1e6, "context": context,
                       "flash_attention": flash, "model_mb": round(peak.model_mb, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    with RESULTS.open("a") as f:
        for row in rows:
            f.write(json.dumps({**row, "pruned_kv_heads_per_layer": heads}) + "\n")


if __name__ == "__main__":
    main()
