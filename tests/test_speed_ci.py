"""Speed ratios with bootstrap intervals, adaptive pairs, and a gate that noise cannot pass
(issue 12): the interval on synthetic ratios, stopping on fake backends with fake clocks,
gate verdicts on hand-made reports, old report.json and settings, and the CLI's exit
status 4. No real model but the tiny one of the last test."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_runtime_checks import SPEED_SETTINGS, _report_dict
from tiny import tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from gprune_edge.cli import cli
from runtime_checks import gate
from runtime_checks.backends.base import GenerationTiming
from runtime_checks.report import to_markdown
from runtime_checks.report_schema import GateResult, RatioSummary, Report
from runtime_checks.settings import SpeedSettings, VerifySettings
from runtime_checks.speed import (
    MIN_INTERVAL_PAIRS,
    _postfix,
    compare_speed,
    ratio_interval,
    relative_width,
)


def _noisy_ratios(n: int, seed: int, truth: float = 1.0, spread: float = 0.15) -> list[float]:
    return list(truth * np.exp(np.random.default_rng(seed).normal(0.0, spread, n)))


# ------------------------------------------------------------------ the interval

def test_interval_covers_the_truth_at_about_its_confidence():
    inside = 0
    for seed in range(200):
        low, high = ratio_interval(_noisy_ratios(15, seed, truth=1.3), 0.95)
        inside += low <= 1.3 <= high
    assert inside / 200 >= 0.88  # nominal 0.95; a median's percentile bootstrap runs a little short


def test_interval_narrows_with_more_pairs_and_is_deterministic():
    widths = [relative_width(ratio_interval(_noisy_ratios(n, 1), 0.95)) for n in (7, 31, 121)]
    assert widths[0] > widths[1] > widths[2] > 0
    ratios = _noisy_ratios(9, 2)
    assert ratio_interval(ratios, 0.95) == ratio_interval(list(ratios), 0.95)  # fixed seed: same report twice
    assert relative_width(ratio_interval(ratios, 0.8)) < relative_width(ratio_interval(ratios, 0.99))


def test_interval_ignores_an_outlier_and_needs_enough_pairs():
    low, high = ratio_interval([1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 0.44], 0.95)  # one pair hit by interference
    assert low >= 0.98 and high <= 1.02
    assert ratio_interval([1.0] * (MIN_INTERVAL_PAIRS - 1), 0.95) is None
    assert relative_width(None) == float("inf")
    assert str(RatioSummary(1.17, 0.44, 1.41, [1.0] * 7, 0.9, 1.3)) == "1.170 [0.900, 1.300] (7 pairs)"


# ------------------------------------------------------------------ adaptive pairs on fake backends

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    """generate() takes `seconds` on the fake clock and reports decode speed `speed` times a noise factor."""

    def __init__(self, name: str, speed: float, clock: FakeClock, calls: list, noise: float = 0.0, seed: int = 0):
        self.name, self.speed, self.clock, self.calls, self.noise = name, speed, clock, calls, noise
        self.rng = np.random.default_rng(seed)

    def generate(self, ids, max_new_tokens) -> GenerationTiming:
        self.calls.append(self.name)
        self.clock.now += 1.0
        speed = self.speed * float(np.exp(self.rng.normal(0.0, self.noise))) if self.noise else self.speed
        return GenerationTiming(tokens=[0] * max_new_tokens, prompt_tokens=len(ids), prefill_s=len(ids) / 1000 / speed,
                                first_token_s=0.01 / speed, decode_s=max(max_new_tokens - 1, 1) / (100 * speed))


def _compare(noise: float, decide=None, **settings):
    clock, calls = FakeClock(), []
    cand = FakeBackend("candidate", 1.5, clock, calls, noise, seed=1)
    base = FakeBackend("baseline", 1.0, clock, calls, noise, seed=2)
    speed = compare_speed(cand, base, list(range(600)), SpeedSettings(**settings), clock=clock, decide=decide)
    return speed, calls


def test_deterministic_timings_stop_at_the_minimum():
    speed, calls = _compare(0.0, pairs=7, max_pairs=31)
    decode = speed.ratio["decode_tok_s"]
    assert len(decode.pairs) == 7 and speed.stopped_by == "width"
    assert decode.median == decode.low == decode.high == pytest.approx(1.5)
    # warm-up (2 calls per model), then 2 calls per model per pair, the order alternating
    timed = calls[4:]
    firsts = [timed[i] for i in range(0, len(timed), 4)]
    assert firsts[:4] == ["candidate", "baseline", "candidate", "baseline"]
    assert speed.seconds == pytest.approx(4 + 7 * 4)
    assert type(speed).from_dict(speed.to_dict()) == speed


def test_noisy_timings_run_to_max_pairs():
    speed, _ = _compare(0.4, pairs=5, max_pairs=12, max_seconds=None)
    decode = speed.ratio["decode_tok_s"]
    assert len(decode.pairs) == 12 and speed.stopped_by == "max_pairs"
    assert relative_width(decode.interval) > 0.10 and decode.low <= decode.median <= decode.high


def test_noisy_timings_stop_at_the_time_cap():
    # each pair takes 4 fake seconds, the warm-up 4: after pair n, elapsed = 4 + 4n; a pair that
    # would end past 40 s is not started, so 8 pairs run (elapsed 36, the next would end near 40.5)
    speed, _ = _compare(0.4, pairs=5, max_pairs=31, max_seconds=40)
    assert speed.stopped_by == "max_seconds" and len(speed.ratio["decode_tok_s"].pairs) == 8
    assert speed.seconds <= 40
    speed, _ = _compare(0.4, pairs=9, max_pairs=31, max_seconds=1)  # the minimum always runs
    assert len(speed.ratio["decode_tok_s"].pairs) == 9


def test_a_threshold_to_decide_spends_pairs_only_where_the_verdict_is_open():
    # far from the threshold: settled at the minimum, however wide the interval
    speed, _ = _compare(0.4, decide=1.0, pairs=5, max_pairs=31, max_seconds=None)
    assert speed.stopped_by == "decided" and len(speed.ratio["decode_tok_s"].pairs) == 5
    # the deterministic ratio is exactly 1.5: an interval holding the threshold never narrows it away
    speed, _ = _compare(0.0, decide=1.5, pairs=5, max_pairs=9, max_seconds=None)
    assert speed.stopped_by == "max_pairs" and len(speed.ratio["decode_tok_s"].pairs) == 9


def test_fixed_pairs_is_pairs_equal_max_pairs():
    speed, _ = _compare(0.4, pairs=7, max_pairs=7)
    assert len(speed.ratio["decode_tok_s"].pairs) == 7 and speed.stopped_by == "max_pairs"


def test_progress_bar_shows_the_interval():
    assert _postfix([1.0, 1.1, 0.9], 0.95) == "decode x1.000"
    assert _postfix([1.0, 1.1, 0.9, 1.05, 0.95], 0.95).startswith("decode x1.000 [")


# ------------------------------------------------------------------ the gate's verdict

def _gate(thresholds, **figures) -> GateResult:
    return gate.check(Report.from_dict(_report_dict(**figures)), thresholds)


def test_gate_verdict_on_the_decode_interval():
    speedup = {"min_decode_speedup": 1.1}
    passed = _gate(speedup, decode=1.2, width=0.05)  # [1.15, 1.25]
    assert passed.verdict == "pass" and passed.passed and gate.exit_code(passed) == 0
    failed = _gate(speedup, decode=1.0, width=0.05)  # [0.95, 1.05]
    assert failed.verdict == "fail" and not failed.passed and gate.exit_code(failed) == gate.EXIT_FAIL == 3
    assert failed.failures == ["min_decode_speedup [torch]: decode speedup 1.000 [0.950, 1.050] (5 pairs), "
                               "threshold 1.1"]
    undecided = _gate(speedup, decode=1.17, width=0.2)  # [0.97, 1.37]: the measured A/A case
    assert undecided.verdict == "undecided" and not undecided.passed and not undecided.failures
    assert gate.exit_code(undecided) == gate.EXIT_UNDECIDED == 4
    [line] = undecided.undecided
    assert "min_decode_speedup [torch]" in line and "1.170 [0.970, 1.370]" in line and "threshold 1.1" in line
    assert "too noisy to decide" in line


def test_gate_fail_outranks_undecided_and_points_stay_points():
    both = {"min_decode_speedup": 1.1, "max_perplexity_ratio": 1.5}
    assert _gate(both, decode=1.17, width=0.2, ppl_ratio=2.0).verdict == "fail"
    assert _gate(both, decode=1.17, width=0.2, ppl_ratio=1.2).verdict == "undecided"
    assert _gate(both, decode=1.3, width=0.1, ppl_ratio=1.2).verdict == "pass"
    # perplexity, accuracy, memory, top-1: point checks, no interval
    assert _gate({"max_perplexity_ratio": 1.5}, ppl_ratio=1.5).verdict == "pass"
    assert _gate({"min_top1_agreement": 0.9}, top1=0.89).verdict == "fail"
    assert _gate({"min_decode_speedup": 1.0}, decode=None).verdict == "fail"  # speed skipped: not measured


def test_a_decode_floor_in_tok_s_is_decided_on_the_candidates_own_interval():
    data = _report_dict(decode=1.2)
    data["candidates"][0]["speed"]["candidate_decode"].update(low=112.0, high=128.0)  # median 120 tok/s
    report = Report.from_dict(data)
    assert gate.check(report, {"min_decode_tok_s": 100}).verdict == "pass"
    assert gate.check(report, {"min_decode_tok_s": 120}).verdict == "undecided"
    failed = gate.check(report, {"min_decode_tok_s": 140})
    assert failed.failures == ["min_decode_tok_s [torch]: decode tok/s 120.000 [112.000, 128.000] (3 pairs), "
                               "threshold 140"]


def test_model_memory_is_what_loading_added_to_the_process():
    # peak 450 MB, of which the interpreter and its imports 200 MB before loading
    assert _gate({"max_model_memory_mb": 260}, memory=450.0).verdict == "pass"
    assert _gate({"max_model_memory_mb": 240}, memory=450.0).verdict == "fail"
    assert _gate({"max_peak_memory_mb": 440}, memory=450.0).verdict == "fail"


def test_gate_without_an_interval_is_undecided():
    data = _report_dict(decode=2.0)
    for summary in data["candidates"][0]["speed"]["ratio"].values():
        summary["low"] = summary["high"] = None  # too few pairs, or a report from before intervals
    result = gate.check(Report.from_dict(data), {"min_decode_speedup": 1.1})
    assert result.verdict == "undecided" and "too few pairs for an interval" in result.undecided[0]


def test_markdown_shows_intervals_and_the_verdict():
    report = Report.from_dict(_report_dict(decode=1.17, width=0.2))
    report.gate = gate.check(report, {"min_decode_speedup": 1.1})
    markdown = to_markdown(report)
    assert "| decode_tok_s | 100.0 | 120.0 | 1.170 [0.970, 1.370] (5 pairs) |" in markdown
    assert "5 alternating pairs in 12 s, stopped by width" in markdown and "95% bootstrap interval" in markdown
    assert "Verdict: UNDECIDED" in markdown and "- UNDECIDED min_decode_speedup [torch]" in markdown


# ------------------------------------------------------------------ reports and settings from before intervals

def _old_layout() -> dict:
    """report.json as verify wrote it before intervals, adaptive pairs and verdicts."""
    data = _report_dict()
    for settings in (data["settings"]["speed"], data["candidates"][0]["speed"]["settings"]):
        for key in ("max_pairs", "confidence", "target_width", "max_seconds"):
            del settings[key]
    speed = data["candidates"][0]["speed"]
    del speed["stopped_by"], speed["seconds"]
    for summary in speed["ratio"].values():
        del summary["low"], summary["high"]
    del data["gate"]["verdict"], data["gate"]["undecided"]
    return data


def test_old_report_json_loads():
    report = Report.from_dict(copy.deepcopy(_old_layout()))
    decode = report.candidates[0].speed.ratio["decode_tok_s"]
    assert decode.low is None and decode.interval is None and "no interval" in str(decode)
    assert report.candidates[0].speed.stopped_by is None
    assert report.settings.speed.max_pairs is None and report.settings.speed.confidence == 0.95
    assert report.gate.verdict == "pass" and report.gate.undecided == []
    failed = _old_layout()
    failed["gate"].update(passed=False, failures=["max_perplexity_ratio [torch]: ..."])
    assert Report.from_dict(failed).gate.verdict == "fail"
    to_markdown(Report.from_dict(_old_layout()))  # an old report still renders
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_old_speed_settings_load_and_new_ones_are_checked():
    old = SpeedSettings.from_dict({"pairs": 40, "prefill_tokens": 512, "prompt_tokens": 64, "decode_tokens": 64,
                                   "threads": 1})
    assert old.pair_cap == 40 and SpeedSettings().pair_cap == 31 and SpeedSettings(max_pairs=7).pair_cap == 7
    assert VerifySettings.from_dict({"speed": SPEED_SETTINGS}).speed.target_width == 0.1
    for bad, expected in [({"pairs": 9, "max_pairs": 5}, "'max_pairs' must be at least pairs (9), got 5"),
                          ({"confidence": 1.0}, "'confidence' must be between 0.5 and 0.999, got 1.0"),
                          ({"target_width": -0.1}, "'target_width' must be at least 0.0, got -0.1"),
                          ({"max_seconds": -1}, "'max_seconds' must be at least 0.0, got -1"),
                          ({"max_pairz": 9}, "has no option 'max_pairz'")]:
        with pytest.raises(GPruneError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            SpeedSettings.from_dict(bad)


# ------------------------------------------------------------------ the CLI's exit status

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_model().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_cli_exits_4_when_undecided(tiny_dir, tmp_path):
    """One timing pair gives no interval: a speed threshold cannot be decided, whatever the ratio."""
    gate_file = tmp_path / "gate.json"
    gate_file.write_text(json.dumps({"min_decode_speedup": 1.0, "min_top1_agreement": 1.0}))
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["verify", str(tiny_dir), "--baseline", str(tiny_dir), "--tasks", "none",
                                      "--distributions", "none", "--no-memory", "--pairs", "1", "--max-pairs", "1",
                                      "--gate", str(gate_file), "--out", str(out)])
    assert result.exit_code == gate.EXIT_UNDECIDED, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("gate ")]
    assert line.startswith("gate UNDECIDED: min_decode_speedup [torch]: decode speedup ")
    assert "(1 pair), threshold 1; too few pairs" in line
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["verdict"] == "undecided" and report["gate"]["passed"] is False
    assert "Verdict: UNDECIDED" in (out / "report.md").read_text()
