"""How much llama.cpp's flash attention changes a GGUF's logits: next-token distributions on the
fixed text (256 tokens of wiki, as `verify`'s parity check) with it off and on.

    python bench/flash_attention_parity.py runs/rpi/artifacts/dense-q8_0.gguf
"""

from __future__ import annotations

import sys

from runtime_checks.backends import load_backend
from runtime_checks.parity import compare_logits
from runtime_checks.verify import fixed_text_ids, load_tokenizer


def main() -> None:
    gguf = sys.argv[1]
    ids = fixed_text_ids(load_tokenizer("smollm2-135m"), 256)
    with load_backend("llama.cpp", gguf, 2, context_length=1024) as off:
        without = off.logits(ids)
    with load_backend("llama.cpp", gguf, 2, context_length=1024, flash_attention=True) as on:
        with_it = on.logits(ids)
    print(compare_logits(without, with_it, ids))


if __name__ == "__main__":
    main()
