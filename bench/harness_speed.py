"""Speed of the verification harness on llama.cpp, against llama.cpp's own prefill speed.

    python bench/harness_speed.py [--threads 1 2] [--windows 4] [--tasks arc_easy:40,hellaswag:20]

On the dense SmolLM2-135M as a q8_0 GGUF (exported once into --work), per thread count:
prefill tok/s from `generate(ids, 1)` (512 tokens, logits of the last position only: the
floor a 512-token window cannot beat), seconds per 512-token perplexity window
(accuracy.perplexity), items/s per zero-shot task (accuracy.evaluate_task). One JSON line
per thread count. To time another version of runtime_checks (the code before a change),
put its copy first on PYTHONPATH."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import runtime_checks
from edgecore.loading import builtin_hf_dir
from runtime_checks import accuracy
from runtime_checks.backends import load_backend
from runtime_checks.verify import fixed_text_ids, load_tokenizer


def dense_gguf(work: Path) -> Path:
    from gprune_edge.export import export

    path = work / "dense-q8_0.gguf"
    if not path.exists():
        export(builtin_hf_dir(), "gguf", "q8_0", path, parity="off")
    return path


def measure(gguf: Path, tokenizer, threads: int, windows: int, tasks: dict[str, int]) -> dict:
    with load_backend("llama.cpp", gguf, threads) as backend:
        ids = fixed_text_ids(tokenizer, 512)
        backend.generate(ids[:16], 1)  # warm-up
        prefill = statistics.median(backend.generate(ids, 1).prefill_s for _ in range(3))
        start = time.perf_counter()
        ppl = accuracy.perplexity(backend, tokenizer, "wiki", 512, windows)
        window_s = (time.perf_counter() - start) / windows
        items = {}
        for name, n in tasks.items():
            start = time.perf_counter()
            result = accuracy.evaluate_task(backend, tokenizer, name, limit=n)
            items[name] = {"items_s": round(n / (time.perf_counter() - start), 2), "acc": result.acc,
                           "acc_norm": result.acc_norm}
    return {"threads": threads, "runtime_checks": str(Path(runtime_checks.__file__).parent),
            "prefill_512_s": round(prefill, 3), "prefill_tok_s": round(512 / prefill, 1),
            "ppl_window_512_s": round(window_s, 3), "window_over_prefill": round(window_s / prefill, 2),
            "wiki_perplexity": ppl.perplexity, "tasks": items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--tasks", default="arc_easy:40,hellaswag:20")
    parser.add_argument("--work", type=Path, default=Path("/tmp/harness"))
    args = parser.parse_args()
    tasks = {name: int(n) for name, n in (t.split(":") for t in args.tasks.split(",") if t)}
    args.work.mkdir(parents=True, exist_ok=True)
    gguf = dense_gguf(args.work)
    tokenizer = load_tokenizer(builtin_hf_dir())
    for threads in args.threads:
        print(json.dumps(measure(gguf, tokenizer, threads, args.windows, tasks)), flush=True)


if __name__ == "__main__":
    main()
