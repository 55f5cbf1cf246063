"""Child process for memory.peak_rss: load one model on one backend, run a short
generation, print the peak resident set size (VmHWM) as JSON on the last stdout line.

    python -m runtime_checks.memory_probe --backend llama.cpp --threads 1 MODEL.gguf
"""

from __future__ import annotations

import argparse
import json
import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space created at exec; ru_maxrss
    would not do: Linux carries the parent's high-water mark over fork + exec into it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--flash-attention", action="store_true")
    args = parser.parse_args(argv)

    from runtime_checks.backends import load_backend  # imports count toward the baseline, as in serving

    before_load = peak_rss_mb()
    backend = load_backend(args.backend, args.artifact, args.threads, args.context_length, args.flash_attention)
    prompt = [3 + (7 * i) % (backend.vocab_size - 3) for i in range(args.prompt_tokens)]  # any valid ids
    backend.generate(prompt, args.new_tokens)
    peak = peak_rss_mb()
    if hasattr(backend, "process_memory"):  # the model lives in another process (Node): its figures
        own = backend.process_memory()
        peak, before_load = own["peak_rss_mb"], own["before_load_mb"]
    backend.close()
    # model_mb: what loading and running added on top of the interpreter and its imports
    print(json.dumps({"peak_rss_mb": peak, "before_load_mb": before_load, "model_mb": peak - before_load}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
