"""Training and held-out windows for distillation.

Named sources (edgecore.textdata: built-in distributions, hf:NAME, local .txt/.jsonl files)
give their "calib" half for training, so the "eval" half stays held out. The budget is split by
the mixture weights; a source too short for its share is repeated, each pass cut at another
offset, up to `max_passes` passes: the rest of its share comes from "self" (a GPU budget of
millions of tokens passed the 37k-token news text 149 times and memorised it). The source "self"
is text the teacher generates itself from varied prompts (data-free distillation): sampled
once and cached in the user cache, keyed by the teacher's weights, tokenizer and sampling
settings. Generation is deterministic per batch (batch b depends on the seed and b only),
so a cache written for a smaller budget is extended, never redone, and two processes
filling it at once write the same content (whole files, via write_atomic)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

import torch

from edgecore import textdata
from edgecore.devices import model_device
from edgecore.errors import GPruneError
from edgecore.fingerprint import model_fingerprint
from edgecore.outputs import write_atomic
from edgecore.pinned import cache_dir
from recovery.config import SELF_SOURCE

log = logging.getLogger(__name__)
GEN_VERSION = 2  # 2: prompts padded to one length
# prompts per generate() call, by device type: a GPU samples hundreds at once; on the CPU 32 gave 1.3x the
# tokens/s of 8 (64: 1.5x, at twice the text a call: more than a CPU budget uses; BENCHMARKS.md)
GEN_BATCH = {"cpu": 32, "cuda": 256}
# KV cache by device type. A static cache lets generate() compile its one-token decoding step on CUDA (CUDA
# graphs: a small model's step is kernel launches more than arithmetic); generate() compiles nothing on the CPU,
# where the static cache measured the same as the dynamic one, within noise (BENCHMARKS.md).
GEN_CACHE = {"cpu": "dynamic", "cuda": "static"}
GEN_NEW_TOKENS = 256  # tokens sampled per prompt (fewer when the teacher ends its text)
GEN_TOP_P = 0.95  # nucleus sampling at temperature 1: the teacher's own distribution, minus its far tail
GEN_SAVE_EVERY = 16  # batches between cache writes (an interrupted generation keeps what it made)

# Openers in several registers and domains; the chat questions are used when the tokenizer
# has a chat template (instruct teachers then write answers, their main use).
OPENERS = (
    "The", "In 1887,", "Once upon a time", "def ", "import numpy as np\n", "The results show that",
    "According to the report,", "Chapter 1\n\n", "Q: What is", "Dear", "# Introduction\n\n",
    "The following", "class ", "It was a", "Scientists have", "In this paper, we", "The city of",
    "Yesterday", "To install the package,", "Abstract:", "Breaking news:", "The history of",
    "function ", "SELECT", "Here is a recipe for", "The president", "A: ", "Step 1:", "I think",
    "The main reason", "#include <stdio.h>\n", "Today we will learn",
)
QUESTIONS = (
    "Explain how photosynthesis works.", "Write a short story about a lighthouse keeper.",
    "What are the main causes of inflation?", "Write a Python function that reverses a linked list.",
    "Summarize the history of the Roman Empire in a paragraph.", "Give me three tips for better sleep.",
    "How does a neural network learn?", "Write a polite email declining a meeting.",
    "What is the difference between weather and climate?", "Describe the water cycle.",
    "Translate 'good morning' into French, Spanish and German.", "What is a prime number? Give examples.",
    "Write a haiku about autumn.", "How do vaccines work?", "Explain recursion to a beginner.",
    "What should I pack for a hiking trip?",
)


def _stream_windows(stream: torch.Tensor, n: int, seq_len: int, g: torch.Generator) -> tuple[torch.Tensor, int]:
    """n random non-overlapping windows of `stream` (LongTensor [T]); when it holds fewer than n,
    it is passed over again at another random offset. Returns (windows [n, seq_len], passes)."""
    out, have, passes = [], 0, 0
    while have < n:
        offset = 0 if passes == 0 else int(torch.randint(0, seq_len, (1,), generator=g))
        usable = (len(stream) - offset) // seq_len * seq_len
        grid = stream[offset:offset + usable].view(-1, seq_len)
        grid = grid[torch.randperm(len(grid), generator=g)][:n - have]
        out.append(grid)
        have += len(grid)
        passes += 1
    return torch.cat(out), passes


def _seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


def check_sources(names: list[str]) -> None:
    """Fail before any slow work for a local file that does not exist."""
    for name in names:
        if name.endswith((".txt", ".jsonl")) and not name.startswith("hf:") and not os.path.isfile(name):
            raise GPruneError(f"data source {name}: no such file")


def split_budget(n_windows: int, sources: list[str], weights: list[float] | None = None) -> dict[str, int]:
    """Windows per source in proportion to `weights` (default: equal), the rounding remainder to the sources
    that lost most to it (the first ones on a tie)."""
    weights = weights or [1.0] * len(sources)
    exact = [n_windows * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(sources)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[:n_windows - sum(shares)]:
        shares[i] += 1
    return dict(zip(sources, shares))


def _named_stream(tokenizer, name: str, seq_len: int) -> torch.Tensor:
    """A named source's training half as one token stream of whole windows."""
    docs = textdata.load_documents(name, "calib")
    return textdata.eval_windows(tokenizer, docs, seq_len, max_windows=2**62, source=name).flatten()


def training_windows(tokenizer, sources: list[str], n_windows: int, seq_len: int, seed: int = 0,
                     teacher=None, progress: bool = True, weights: list[float] | None = None,
                     max_passes: int = 4) -> tuple[torch.Tensor, dict]:
    """([n_windows, seq_len] shuffled training windows, {source: {"windows", "passes"[, "capped"]}}).
    A named source gives at most `max_passes` passes over its text; what its share needs beyond that
    comes from "self", which needs the teacher (it generates the text)."""
    shares = split_budget(n_windows, sources, weights)
    streams, info = {}, {}
    for name, n in list(shares.items()):
        if name == SELF_SOURCE or n == 0:
            continue
        streams[name] = _named_stream(tokenizer, name, seq_len)
        cap = (len(streams[name]) - seq_len + 1) // seq_len * max_passes  # whole windows in any max_passes passes
        if n > cap:
            log.warning("data source %s: its share of %d windows needs more than %d passes over its %d tokens; "
                        "%d windows come from self (text the teacher generates) instead", name, n, max_passes,
                        len(streams[name]), n - cap)
            shares[name], shares[SELF_SOURCE] = cap, shares.get(SELF_SOURCE, 0) + n - cap
            info[name] = {"capped": n - cap}
    parts = []
    for name, n in shares.items():
        if n == 0:
            continue
        if name == SELF_SOURCE:
            if teacher is None:
                raise GPruneError("the data source 'self' needs the teacher model to generate text")
            stream = self_generated_stream(teacher, tokenizer, n * seq_len, seed, progress)
        else:
            stream = streams[name]
        windows, passes = _stream_windows(stream, n, seq_len, torch.Generator().manual_seed(_seed(seed, name)))
        parts.append(windows)
        info[name] = {"windows": n, "passes": passes, **info.get(name, {})}
    windows = torch.cat(parts)
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
    return windows[order].contiguous(), info


def heldout_windows(tokenizer, sources: list[str], seq_len: int, n: int) -> dict[str, torch.Tensor]:
    """Up to n consecutive windows of each source's "eval" half (never trained on). "self" and
    sources whose held-out half is shorter than one window are left out."""
    out = {}
    for name in sources:
        if name == SELF_SOURCE or n < 1:
            continue
        try:
            out[name] = textdata.eval_windows(tokenizer, textdata.load_documents(name, "eval"), seq_len, n, source=name)
        except GPruneError:
            continue  # too little held-out text for a window: no figure for this source
    return out


# ----------------------------------------------------------------------------- data-free: "self"

def gen_batch(device: torch.device) -> int:
    return GEN_BATCH.get(device.type, GEN_BATCH["cpu"])


def gen_cache(device: torch.device) -> str:
    return GEN_CACHE.get(device.type, GEN_CACHE["cpu"])


def _chat(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def _prompt_tokens(tokenizer) -> int:
    """Tokens in the longest prompt `_prompts` can draw. Every batch is left-padded to it, so each
    generate() call has the same shapes: a static cache is compiled once, not once per prompt length."""
    prompts = list(OPENERS) + ([_chat(tokenizer, q) for q in QUESTIONS] if _has_chat(tokenizer) else [])
    return max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])


def _has_chat(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _prompts(tokenizer, n: int, g: torch.Generator) -> list[str]:
    chat = _has_chat(tokenizer)
    prompts = []
    for _ in range(n):
        if chat and int(torch.randint(0, 2, (1,), generator=g)):
            prompts.append(_chat(tokenizer, QUESTIONS[int(torch.randint(0, len(QUESTIONS), (1,), generator=g))]))
        else:
            prompts.append(OPENERS[int(torch.randint(0, len(OPENERS), (1,), generator=g))])
    return prompts


@torch.no_grad()
def generate_batch(teacher, tokenizer, seed: int, batch: int) -> list[list[int]]:
    """gen_batch(device) token sequences (prompt + sampled continuation, up to end-of-text) for batch
    number `batch`; the same (teacher, seed, batch, device) always gives the same sequences."""
    g = torch.Generator().manual_seed(_seed(seed, f"self-{batch}"))
    prompts = _prompts(tokenizer, gen_batch(model_device(teacher)), g)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = tokenizer(prompts, return_tensors="pt", padding="max_length", max_length=_prompt_tokens(tokenizer),
                    padding_side="left", add_special_tokens=False)
    device = model_device(teacher)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # sampling uses the global RNG: seed it, then put it back
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        was_training = teacher.training
        teacher.eval()
        out = teacher.generate(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                               do_sample=True, temperature=1.0, top_p=GEN_TOP_P, top_k=0,
                               max_new_tokens=GEN_NEW_TOKENS, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                               cache_implementation=gen_cache(device))
        teacher.train(was_training)
    sequences = []
    prompt_len = enc["input_ids"].shape[1]
    for row, mask in zip(out.cpu().tolist(), enc["attention_mask"].tolist()):
        prompt = row[prompt_len - sum(mask):prompt_len]  # left padding removed
        new = row[prompt_len:]
        if tokenizer.eos_token_id in new:
            new = new[:new.index(tokenizer.eos_token_id)]
        sequences.append(prompt + new)
    return sequences


def self_cache_path(teacher, tokenizer, seed: int) -> Path:
    vocab = hashlib.sha1(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:12]
    device = model_device(teacher)
    spec = json.dumps({"v": GEN_VERSION, "teacher": model_fingerprint(teacher), "vocab": vocab,
                       "template": hashlib.sha1(str(getattr(tokenizer, "chat_template", "")).encode()).hexdigest()[:12],
                       "seed": seed, "batch": gen_batch(device), "cache": gen_cache(device), "new": GEN_NEW_TOKENS,
                       "top_p": GEN_TOP_P, "openers": OPENERS, "questions": QUESTIONS, "device": device.type,
                       "dtype": str(next(teacher.parameters()).dtype)})
    return cache_dir() / "distill" / f"self-{hashlib.sha1(spec.encode()).hexdigest()[:20]}.json"


def _read_cache(path: Path) -> list[list[list[int]]]:
    try:
        data = json.loads(path.read_text())
        batches = data["batches"]
        if data.get("version") == GEN_VERSION and isinstance(batches, list):
            return batches
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or damaged: generated again
    return []


def self_generated_stream(teacher, tokenizer, n_tokens: int, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """At least n_tokens tokens of teacher-generated text, sequences joined by end-of-text."""
    path = self_cache_path(teacher, tokenizer, seed)
    batches = _read_cache(path)
    count = sum(len(s) + 1 for b in batches for s in b)
    if count < n_tokens:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_tokens, initial=min(count, n_tokens), unit="tok", unit_scale=True,
                   desc="teacher writing 'self' text", disable=not progress)
        made = 0
        while count < n_tokens:
            batch = generate_batch(teacher, tokenizer, seed, len(batches))
            batches.append(batch)
            added = sum(len(s) + 1 for s in batch)
            count += added
            bar.update(min(added, bar.total - bar.n))
            made += 1
            if made % GEN_SAVE_EVERY == 0:
                write_atomic(path, json.dumps({"version": GEN_VERSION, "batches": batches}))
        bar.close()
        write_atomic(path, json.dumps({"version": GEN_VERSION, "batches": batches}))
    eos = tokenizer.eos_token_id
    stream = []
    for batch in batches:
        for seq in batch:
            stream += seq + ([eos] if eos is not None else [])
            if len(stream) >= n_tokens:
                break
        if len(stream) >= n_tokens:
            break
    return torch.tensor(stream, dtype=torch.long)
