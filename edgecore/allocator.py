"""Freed memory goes back to the operating system at once.

glibc's malloc serves a large block from the heap once a block that large has been freed (its
mmap threshold rises to the largest one freed, up to 32 MB), and keeps freed heap memory for reuse.
A process that holds one layer or one chunk of logits at a time then looks, to the OS and to a
device's memory budget, as if it held several: distilling SmolLM2 at batch 8 x 256 with gradient
checkpointing peaked at 3.8 GB RSS with glibc's defaults and 2.8 GB with blocks of 1 MB and more
mapped and unmapped (BENCHMARKS.md, issue 26). The command line sets this once at start-up; it
is what MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=0 would set."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Ask glibc to map blocks of MMAP_THRESHOLD bytes and more on their own and to trim freed heap
    memory; True when it took effect (False off glibc, e.g. macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 0))
    except (OSError, AttributeError):
        return False
