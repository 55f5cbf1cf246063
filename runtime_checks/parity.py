"""Parity between two runtimes on the same tokens: do they predict the same next
tokens with the same distributions?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecore.errors import GPruneError
from runtime_checks.loglik import log_softmax


@dataclass
class Parity:
    tokens: int
    top1_agreement: float  # share of positions where both argmaxes agree
    kl_mean: float  # mean KL(reference || candidate) of next-token distributions, nats
    kl_max: float
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    ppl_reference: float
    ppl_candidate: float

    @property
    def ppl_ratio(self) -> float:
        return self.ppl_candidate / self.ppl_reference

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl_ratio": self.ppl_ratio}

    @classmethod
    def from_dict(cls, data: dict) -> "Parity":
        """Inverse of to_dict (ppl_ratio is derived, so it is not read back)."""
        return cls(**{k: v for k, v in data.items() if k != "ppl_ratio"})


def _perplexity(logp: np.ndarray, ids: list[int]) -> float:
    targets = np.asarray(ids[1:])
    return float(np.exp(-logp[np.arange(len(targets)), targets].mean()))


def compare_logits(reference: np.ndarray, candidate: np.ndarray, ids: list[int]) -> Parity:
    """Both arrays [len(ids), vocab] from `Backend.logits(ids)`; vocabularies are cut to the shorter."""
    vocab = min(reference.shape[-1], candidate.shape[-1])
    ref, cand = reference[:, :vocab], candidate[:, :vocab]
    lp_ref, lp_cand = log_softmax(ref), log_softmax(cand)
    kl = (np.exp(lp_ref) * (lp_ref - lp_cand)).sum(-1)
    diff = np.abs(ref.astype(np.float64) - cand)
    return Parity(
        tokens=len(ids),
        top1_agreement=float((ref.argmax(-1) == cand.argmax(-1)).mean()),
        kl_mean=float(kl.mean()), kl_max=float(kl.max()),
        max_abs_logit_diff=float(diff.max()), mean_abs_logit_diff=float(diff.mean()),
        ppl_reference=_perplexity(lp_ref[:-1], ids), ppl_candidate=_perplexity(lp_cand[:-1], ids),
    )


def compare_backends(reference, candidate, ids: list[int]) -> Parity:
    """Parity of two loaded `Backend`s: each computes the logits of `ids`, compare_logits compares them."""
    return compare_logits(reference.logits(ids), candidate.logits(ids), ids)


def check_same_vocabulary(candidate: str, candidate_vocab: int, reference: str, reference_vocab: int,
                          advice: str) -> None:
    """Before comparing two models: GPruneError in one line when their vocabularies differ (their
    logits would not describe the same tokens). `candidate`/`reference` name the models in the
    message ("the baseline m/"); `advice` says what to do."""
    if candidate_vocab != reference_vocab:
        raise GPruneError(f"vocabularies differ: {candidate} has {candidate_vocab} tokens, {reference} has "
                          f"{reference_vocab}; {advice}")


def check_tokenizer_fits(tokenizer: str, tokenizer_size: int, model: str, vocab: int, advice: str) -> None:
    """GPruneError in one line when the tokenizer knows more tokens than the model's vocabulary
    (its ids would index past the logits). A smaller tokenizer is fine: vocabularies are often padded."""
    if tokenizer_size > vocab:
        raise GPruneError(f"{tokenizer} has {tokenizer_size} tokens, more than the {vocab} in the vocabulary of "
                          f"{model}; {advice}")
