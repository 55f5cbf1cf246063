"""Accuracy of one loaded backend: perplexity per text distribution, zero-shot
multiple-choice acc/acc_norm per task, LAMBADA last-word accuracy.

All scoring goes through loglik.score, so every runtime is scored identically. A change to what
this, loglik or a backend's scoring computes must bump baseline_cache.HARNESS_VERSION, or builds
keep comparing against baseline figures cached by the old code."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from edgecore.textdata import eval_windows, load_documents
from runtime_checks import tasks as task_data
from runtime_checks.loglik import encode_pair, score

DEFAULT_SEQ_LEN = 512
DEFAULT_WINDOWS = 16
CHUNK = 16  # items scored per call: small enough for a live progress bar, large enough to batch

# The metric pruning papers quote per task (acc_norm where the harness's length normalisation is customary).
PRIMARY_METRIC = {"arc_easy": "acc_norm", "arc_challenge": "acc_norm", "piqa": "acc_norm", "hellaswag": "acc_norm",
                  "openbookqa": "acc_norm", "winogrande": "acc", "boolq": "acc", "lambada": "acc"}


@dataclass
class TaskResult:
    task: str
    n: int
    acc: float
    acc_norm: float | None  # None for LAMBADA
    chance: float
    perplexity: float | None = None  # LAMBADA only: exp(-mean log p(target))

    @property
    def metric(self) -> str:
        """The primary metric's name: "acc" or "acc_norm"."""
        return PRIMARY_METRIC[self.task]

    @property
    def primary(self) -> float:
        return self.acc_norm if self.metric == "acc_norm" else self.acc

    @property
    def stderr(self) -> float:
        """Binomial standard error of the primary metric."""
        p = self.primary
        return math.sqrt(p * (1 - p) / max(self.n - 1, 1))

    def to_dict(self) -> dict:
        return {**asdict(self), "metric": self.metric, "primary": self.primary,
                "stderr": self.stderr}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskResult":
        """Inverse of to_dict (metric, primary and stderr are derived, so they are not read back)."""
        return cls(**{k: v for k, v in data.items() if k not in ("metric", "primary", "stderr")})


@dataclass
class PerplexityResult:
    distribution: str
    windows: int
    seq_len: int
    tokens: int  # predicted tokens
    perplexity: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PerplexityResult":
        return cls(**data)


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _scored(backend, items, desc: str):
    """loglik.score over `items` in chunks, with a progress bar."""
    out = []
    with tqdm(total=len(items), desc=desc, unit="item", leave=False) as bar:
        for chunk in _chunks(items):
            out += score(backend, chunk)
            bar.update(len(chunk))
    return out


def perplexity(backend, tokenizer, distribution: str, seq_len: int = DEFAULT_SEQ_LEN,
               max_windows: int = DEFAULT_WINDOWS) -> PerplexityResult:
    """Token-level perplexity over consecutive windows of the distribution's eval half; each
    window is scored on its own (its first token is context only)."""
    windows = eval_windows(tokenizer, load_documents(distribution, split="eval"), seq_len, max_windows,
                           source=distribution).tolist()
    nll, tokens = _windows_nll(backend, windows, f"{backend.name} ppl {distribution}")
    return PerplexityResult(distribution, len(windows), seq_len, tokens, math.exp(nll / tokens))


def window_perplexity(backend, windows: list[list[int]]) -> float:
    """Token-level perplexity of `backend` over token windows the caller has cut (e.g. a model in
    memory behind TorchBackend.from_model), each scored on its own as `perplexity` scores them."""
    nll, tokens = _windows_nll(backend, windows, f"{backend.name} ppl")
    return math.exp(nll / tokens)


def _windows_nll(backend, windows: list[list[int]], desc: str) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens scored) of the windows, each on its own (its first
    token is context only)."""
    scored = _scored(backend, [([w[0]], [w[1:]]) for w in windows], desc)
    return -sum(s[0].logprob for s in scored), sum(s[0].tokens for s in scored)


def _multiple_choice(backend, tokenizer, name: str, questions) -> TaskResult:
    items = []
    for q in questions:
        pairs = [encode_pair(tokenizer, ctx, cont) for ctx, cont in q.requests]
        if all(p[0] == pairs[0][0] for p in pairs):
            items.append((pairs[0][0], [p[1] for p in pairs]))
        else:  # WinoGrande: one context per choice; split so each context is reused where it can be
            items += [(ctx, [cont]) for ctx, cont in pairs]
    flat = [s for row in _scored(backend, items, f"{backend.name} {name}") for s in row]
    acc = acc_norm = 0.0
    scores = iter(flat)
    for q in questions:
        lls = [next(scores).logprob for _ in q.requests]
        hit, hit_norm = task_data.score_multiple_choice(lls, [cont for _, cont in q.requests], q.gold)
        acc, acc_norm = acc + hit, acc_norm + hit_norm
    n = len(questions)
    return TaskResult(name, n, acc / n, acc_norm / n, task_data.CHANCE[name])


def _last_word(backend, tokenizer, name: str, questions) -> TaskResult:
    items = []
    for q in questions:
        ctx, cont = encode_pair(tokenizer, q.context, q.target)
        items.append((ctx, [cont]))
    scored = [row[0] for row in _scored(backend, items, f"{backend.name} {name}")]
    n = len(scored)
    mean_logprob = sum(s.logprob for s in scored) / n
    return TaskResult(name, n, sum(s.greedy for s in scored) / n, None, task_data.CHANCE[name],
                      perplexity=math.exp(-mean_logprob))


def evaluate_task(backend, tokenizer, name: str, limit: int | None = None, seed: int = 0) -> TaskResult:
    questions = task_data.load_task(name, limit=limit, seed=seed)
    if questions and isinstance(questions[0], task_data.LastWord):
        return _last_word(backend, tokenizer, name, questions)
    return _multiple_choice(backend, tokenizer, name, questions)


@torch.inference_mode()
def evaluate(backend, tokenizer, task_names=(), distributions=(), limit: int | None = None, seed: int = 0,
             seq_len: int = DEFAULT_SEQ_LEN, max_windows: int = DEFAULT_WINDOWS) -> dict:
    """{"tasks": {name: TaskResult}, "perplexity": {distribution: PerplexityResult}} for one backend."""
    return {
        "tasks": {t: evaluate_task(backend, tokenizer, t, limit, seed) for t in task_names},
        "perplexity": {d: perplexity(backend, tokenizer, d, seq_len, max_windows) for d in distributions},
    }
