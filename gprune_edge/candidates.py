"""The artifacts a build weighs against each other, what was measured of each, and dominance.

A candidate dominates another when it is at least as small, as accurate, as light in memory
and as fast, and better in size or accuracy. Size and perplexity are exact (the same windows
for every candidate); memory is taken as equal within MEMORY_NOISE; decode speed is measured
in noisy pairs, so a candidate counts as "as fast" unless its interval lies wholly below the
other's. A build never ships a dominated candidate unless `--sparsity` forced it, and then
names what dominates it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MEMORY_NOISE = 0.02  # peak RSS of one file moves by ~1% between fresh processes


def model_label(sparsity: float) -> str:
    return "dense" if sparsity == 0 else f"pruned{round(sparsity * 100):02d}"


def artifact_name(label: str, fmt: str, dtype: str) -> str:
    return f"{label}-{dtype}.gguf" if fmt == "gguf" else f"{label}-onnx-{dtype}"


@dataclass
class Candidate:
    """One model x artifact type the build made or considered, with what was measured. Ratios are
    to the reference: the dense model at the target's reference type."""
    sparsity: float
    format: str
    dtype: str
    artifact: str | None = None  # relative to the build folder; None: not built
    size_bytes: int | None = None  # measured, or predicted when not built
    perplexity_ratio: float | None = None  # geometric mean over distributions
    max_perplexity_ratio: float | None = None  # the worst distribution's
    decode_speedup: dict | None = None  # median, low, high (confidence interval), pairs
    decode_tok_s: dict | None = None  # the candidate's own: median, low, high, pairs
    memory_mb: float | None = None  # what loading it and filling the target's context added to a process
    accuracy_delta: float | None = None  # mean zero-shot accuracy change (full tier only)
    verdict: str = ""  # "meets budgets", "misses: ...", "skipped: ...", "chosen: <gate verdict>"
    report: str | None = None  # the verification report (relative)

    @property
    def label(self) -> str:
        return artifact_name(model_label(self.sparsity), self.format, self.dtype)

    @property
    def measured(self) -> bool:
        return self.perplexity_ratio is not None

    @property
    def meets(self) -> bool:
        return self.measured and not self.verdict.startswith(("misses", "skipped"))

    def to_dict(self) -> dict:
        return {"label": self.label, **asdict(self)}


def bounds(speed: dict | None) -> tuple[float, float] | None:
    """A timed figure's (low, high) interval; its median at both ends when it has none."""
    if not speed:
        return None
    median = speed["median"]
    return (median if speed["low"] is None else speed["low"]), (median if speed["high"] is None else speed["high"])


def interval_text(speed: dict | None, spec: str) -> str:
    """A timed figure as "median [low, high]" in format `spec` ("-": not timed)."""
    if not speed:
        return "-"
    if speed["low"] is None or speed["pairs"] == 0:
        return f"{speed['median']:{spec}}"
    return f"{speed['median']:{spec}} [{speed['low']:{spec}}, {speed['high']:{spec}}]"


def dominates(a: Candidate, b: Candidate) -> bool:
    """Whether `a` is at least as good as `b` in every figure measured for both, and smaller or more accurate."""
    if a is b or not (a.measured and b.measured):
        return False
    if a.size_bytes > b.size_bytes or a.perplexity_ratio > b.perplexity_ratio:
        return False
    if a.memory_mb is not None and b.memory_mb is not None and a.memory_mb > b.memory_mb * (1 + MEMORY_NOISE):
        return False
    speed_a, speed_b = bounds(a.decode_speedup), bounds(b.decode_speedup)
    if speed_a and speed_b and speed_a[1] < speed_b[0]:  # a's interval wholly below b's: slower
        return False
    return a.size_bytes < b.size_bytes or a.perplexity_ratio < b.perplexity_ratio


def dominating(c: Candidate, candidates: list[Candidate]) -> list[Candidate]:
    """The measured candidates that dominate `c`, most accurate first."""
    return sorted((o for o in candidates if dominates(o, c)), key=lambda o: o.perplexity_ratio)


def choose(candidates: list[Candidate], forced: float | None = None) -> tuple[Candidate | None, Candidate | None]:
    """What ships and what the search alone would ship. The search ships the most accurate candidate
    that meets the budgets and that no other such candidate dominates; with `forced` (a sparsity),
    the most accurate candidate at that sparsity that meets the budgets ships instead. None: nothing
    meets them."""
    within = [c for c in candidates if c.meets]
    free = [c for c in within if not dominating(c, within)]
    search = min(free, key=lambda c: c.perplexity_ratio, default=None)
    if forced is None:
        return search, search
    at_forced = [c for c in within if c.sparsity == forced]
    return min(at_forced, key=lambda c: c.perplexity_ratio, default=None), search


def conclusion(best: Candidate, instead: Candidate | None, candidates: list[Candidate], forced: float | None,
               limits: str) -> str:
    """The build's answer in a sentence: what ships and why, or, under --sparsity, what the search
    would have shipped and what dominates the forced artifact."""
    if forced is not None:
        text = f"--sparsity {forced:g} forced {best.label}"
        if instead is not None:
            text += f"; of what it measured, the search would have shipped {instead.label} " \
                    f"({instead.perplexity_ratio:.3f})"
        over = dominating(best, [c for c in candidates if c.measured])
        if over:
            text += f"; {best.label} is dominated by {', '.join(c.label for c in over)} (as small, as light, " \
                    "as fast within the interval, and smaller or more accurate)"
        return text
    if best.sparsity == 0:
        pruned = any(c.sparsity and c.measured for c in candidates)
        return (f"nothing needs pruning: the dense model as {best.dtype} is the most accurate within {limits}"
                + ("" if pruned else ", and no pruned model could be more accurate"))
    text = f"pruned {best.sparsity:.0%} as {best.dtype} is the most accurate within {limits}"
    dense = [c for c in candidates if c.sparsity == 0]
    within = [c for c in dense if c.meets]
    if within:
        d = min(within, key=lambda c: c.perplexity_ratio)
        return f"{text}; the best dense quantization within them, {d.label}, scores {d.perplexity_ratio:.3f}"
    why = ", ".join(f"{c.label}: {c.verdict.split(': ', 1)[-1] if c.verdict else 'not measured'}" for c in dense)
    return f"{text}; no dense quantization meets them ({why})"
