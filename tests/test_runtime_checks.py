"""runtime_checks on tiny random models: scorer correctness, parity metrics, gate, report
schema, CLI errors."""

from __future__ import annotations

import copy
import json
import math
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_model, tiny_tokenizer

from edgecore.errors import GPruneError
from gprune_edge.cli import cli
from runtime_checks import gate
from runtime_checks.accuracy import window_perplexity
from runtime_checks.backends import default_backend, load_backend
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.export_parity import check_tolerance
from runtime_checks.loglik import _score_by_logits, encode_pair, score
from runtime_checks.parity import Parity, compare_logits
from runtime_checks.report_schema import Report


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_model().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_backend():
    return TorchBackend("tiny", threads=1, model=tiny_model(), tokenizer=tiny_tokenizer())


def direct_logprob(model, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) from one plain forward: the definition, nothing shared with the scorer."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return sum(logp[len(context) - 1 + i, tok].item() for i, tok in enumerate(continuation))


ITEMS = [([5, 9, 17], [[40], [41, 42], [7, 8, 9, 10]]), ([33], [[60, 61]]), (list(range(10, 40)), [[3], [4, 5]])]


def test_loglik_matches_direct_computation(tiny_backend):
    batched = score(tiny_backend, ITEMS)  # torch's batched, padded path
    generic = _score_by_logits(tiny_backend, ITEMS, 2048)  # Backend.logits path, one sequence at a time
    for (context, continuations), b_row, g_row in zip(ITEMS, batched, generic):
        for cont, b, g in zip(continuations, b_row, g_row):
            expected = direct_logprob(tiny_backend.model, context, cont)
            assert b.logprob == pytest.approx(expected, abs=1e-4)
            assert g.logprob == pytest.approx(expected, abs=1e-4)
            assert b.tokens == len(cont)


def test_window_perplexity_is_the_definition(tiny_backend):
    windows = [list(range(5, 21)), list(range(40, 52))]
    nll = -sum(direct_logprob(tiny_backend.model, [w[0]], w[1:]) for w in windows)
    expected = math.exp(nll / sum(len(w) - 1 for w in windows))
    assert window_perplexity(tiny_backend, windows) == pytest.approx(expected, rel=1e-5)


def test_greedy_flag_is_argmax_match(tiny_backend):
    context = [5, 9, 17, 22]
    greedy = []
    for _ in range(3):  # build the model's own greedy continuation
        greedy.append(int(tiny_backend.logits(context + greedy)[-1].argmax()))
    other = [(greedy[0] + 1) % 128 or 3] + greedy[1:]
    [[hit, miss]] = score(tiny_backend, [(context, [greedy, other])])
    assert hit.greedy and not miss.greedy


def test_encode_pair_splits_like_the_harness():
    tok = tiny_tokenizer()
    context, continuation = encode_pair(tok, "ab ", "cd")  # trailing space moves to the continuation
    assert tok.convert_ids_to_tokens(context) == ["a", "b"]
    assert continuation == tok(" cd", add_special_tokens=False)["input_ids"] or \
        tok.convert_ids_to_tokens(continuation)[-2:] == ["c", "d"]
    empty_context, _ = encode_pair(tok, "", "xy")
    assert empty_context == [tok.eos_token_id]


def test_parity_metrics_on_hand_made_arrays():
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    same = compare_logits(ref, ref.copy(), [0, 1, 2])
    assert same.top1_agreement == 1.0 and same.kl_mean == pytest.approx(0.0, abs=1e-12)
    cand = ref.copy()
    cand[2] = [0.0, 2.0, 0.0]  # last position now prefers token 1
    diff = compare_logits(ref, cand, [0, 1, 2])
    assert diff.top1_agreement == pytest.approx(2 / 3)
    p = np.exp(ref[2]) / np.exp(ref[2]).sum()
    q = np.exp(cand[2]) / np.exp(cand[2]).sum()
    assert diff.kl_max == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-6)
    assert diff.kl_mean == pytest.approx(diff.kl_max / 3, rel=1e-6)


def test_check_tolerance_fails_on_nan_parity():
    good = dict(tokens=8, top1_agreement=1.0, kl_mean=0.0, kl_max=0.0, max_abs_logit_diff=0.0,
                mean_abs_logit_diff=0.0, ppl_reference=10.0, ppl_candidate=10.0)
    check_tolerance(Parity(**good), "f32", "gguf export")
    for figure in ("top1_agreement", "kl_mean", "kl_max", "max_abs_logit_diff", "ppl_candidate"):
        with pytest.raises(GPruneError) as raised:  # NaN compares false: it must not slip through < and >
            check_tolerance(Parity(**{**good, figure: math.nan}), "f32", "gguf export")
        message = str(raised.value)
        assert len(message.splitlines()) == 1 and f"{figure} is NaN" in message


def _run_dict(peak_rss_mb=300.0) -> dict:
    """One run of report.json as verify wrote it before report_schema (the layout readers rely on)."""
    return {
        "artifact": {"path": "/m", "file_bytes": 4096, "file_mb": 4096 / 2**20, "parameters": 1000,
                     "files": ["model.safetensors"]},
        "backend": "torch",
        "tasks": {"arc_easy": {"task": "arc_easy", "n": 3, "acc": 2 / 3, "acc_norm": 1 / 3, "chance": 0.25,
                               "perplexity": None, "metric": "acc_norm", "primary": 1 / 3,
                               "stderr": math.sqrt(1 / 3 * (1 - 1 / 3) / 2)},
                  "lambada": {"task": "lambada", "n": 3, "acc": 0.0, "acc_norm": None, "chance": 0.0,
                              "perplexity": 2e15, "metric": "acc", "primary": 0.0, "stderr": 0.0}},
        "perplexity": {"news": {"distribution": "news", "windows": 2, "seq_len": 64, "tokens": 126,
                                "perplexity": 131.0}},
        "memory": {"peak_rss_mb": peak_rss_mb, "before_load_mb": 200.0, "model_mb": peak_rss_mb - 200.0},
    }


SPEED_SETTINGS = {"pairs": 5, "prefill_tokens": 512, "prompt_tokens": 64, "decode_tokens": 64, "threads": 1,
                  "max_pairs": None, "confidence": 0.95, "target_width": 0.1, "max_seconds": 300.0}


def _report_dict(ppl_ratio=1.0, acc_delta=0.0, decode=1.2, memory=300.0, top1=0.99, width=0.02) -> dict:
    """report.json as verify writes it; each speed ratio's interval is its value -/+ `width`."""
    ratio = {name: {"median": value, "min": value, "max": value, "pairs": [value] * 5, "low": value - width,
                    "high": value + width}
             for name, value in (("prefill_tok_s", 1.1), ("decode_tok_s", decode or 1.0), ("ttft_ms", 0.9))}
    speed = {"settings": dict(SPEED_SETTINGS),
             "candidate": {"prefill_tok_s": 1100.0, "decode_tok_s": 120.0, "ttft_ms": 9.0},
             "baseline": {"prefill_tok_s": 1000.0, "decode_tok_s": 100.0, "ttft_ms": 10.0}, "ratio": ratio,
             "stopped_by": "width", "seconds": 12.5,
             "candidate_decode": {"median": 120.0, "min": 110.0, "max": 130.0, "pairs": [110.0, 120.0, 130.0],
                                  "low": None, "high": None}}
    comparison = {
        "tasks": {"arc_easy": {"metric": "acc_norm", "candidate": 1 / 3 + acc_delta, "baseline": 1 / 3,
                               "delta": acc_delta, "chance": 0.25, "n": 3}},
        "mean_accuracy": {"candidate": 1 / 3 + acc_delta, "baseline": 1 / 3, "delta": acc_delta},
        "perplexity": {"news": {"candidate": 131.0 * ppl_ratio, "baseline": 131.0, "ratio": ppl_ratio}},
        "max_perplexity_ratio": ppl_ratio,
        "memory": {"candidate_mb": memory, "baseline_mb": 300.0, "ratio": memory / 300.0,
                   "candidate_model_mb": memory - 200.0, "baseline_model_mb": 100.0,
                   "model_ratio": (memory - 200.0) / 100.0},
        "file_mb_ratio": 1.0, "parameters_ratio": 1.0,
        "speed_ratio": {name: r["median"] for name, r in ratio.items()} if decode else None,
    }
    parity = {"tokens": 256, "top1_agreement": top1, "kl_mean": 0.01, "kl_max": 0.1, "max_abs_logit_diff": 0.5,
              "mean_abs_logit_diff": 0.05, "ppl_reference": 20.0, "ppl_candidate": 25.0, "ppl_ratio": 1.25}
    candidate = {**_run_dict(memory), "parity": parity, "speed": speed if decode else None, "comparison": comparison}
    return {
        "artifact": "/m", "baseline": "/dense",
        "settings": {"tasks": ["arc_easy", "lambada"], "distributions": ["news"], "limit": 3, "seed": 0, "seq_len": 64,
                     "max_windows": 2, "threads": 1, "parity_tokens": 256,
                     "speed": dict(SPEED_SETTINGS), "memory": True, "context_length": None,
                     "flash_attention": False},
        "environment": {"date": "2026-01-01T00:00:00+00:00", "cpu": "cpu", "cores": 2, "threads": 1,
                        "platform": "Linux", "python": "3.11.7", "packages": {"torch": "2.13.0", "llama-cpp-python": None}},
        "candidates": [candidate],
        "baseline_run": _run_dict(),
        "gate": {"thresholds": {"max_perplexity_ratio": 1.5}, "passed": True, "failures": [], "verdict": "pass",
                 "undecided": []},
    }


def _report(**figures) -> Report:
    return Report.from_dict(_report_dict(**figures))


def test_report_round_trips_through_its_json_layout():
    layout = _report_dict()
    report = Report.from_dict(copy.deepcopy(layout))
    assert report.candidates[0].comparison.speed_ratio.decode_tok_s == 1.2  # read as attributes
    assert report.baseline_run.tasks["arc_easy"].primary == pytest.approx(1 / 3)
    assert report.settings.speed.pairs == 5 and report.gate.passed
    # to_dict is report.json's layout key for key, in order: existing reports and readers stay valid
    assert json.dumps(report.to_dict()) == json.dumps(layout)
    assert Report.from_dict(report.to_dict()) == report
    ungated = _report_dict(decode=None)
    del ungated["gate"]
    assert Report.from_dict(ungated).gate is None and Report.from_dict(ungated).to_dict() == ungated


def test_gate_passes_and_fails_on_each_threshold():
    thresholds = {"max_accuracy_drop": 0.02, "max_perplexity_ratio": 1.5, "min_decode_speedup": 1.1,
                  "max_peak_memory_mb": 400, "min_top1_agreement": 0.9}
    assert gate.evaluate(_report(), thresholds) == []
    bad = _report(ppl_ratio=2.0, acc_delta=-0.05, decode=0.9, memory=500, top1=0.5)
    assert sorted(f.key for f in gate.evaluate(bad, thresholds)) == sorted(thresholds)
    [unmeasured] = gate.evaluate(_report(decode=None), {"min_decode_speedup": 1.0})
    assert unmeasured.figure is None and "not measured" in str(unmeasured)


def test_gate_file_unknown_key_and_bad_value(tmp_path):
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"max_perplexity_ratio": 1.2}))
    assert gate.load_thresholds(good) == {"max_perplexity_ratio": 1.2}
    typo = tmp_path / "typo.yaml"
    typo.write_text("max_perplexity_ratoi: 1.2\n")
    with pytest.raises(GPruneError, match="unknown threshold key"):
        gate.load_thresholds(typo)
    text = tmp_path / "text.yaml"
    text.write_text("min_decode_speedup: fast\n")
    with pytest.raises(GPruneError, match="must be a number"):
        gate.load_thresholds(text)
    # the same checks on thresholds already in memory (a target profile's gate)
    assert gate.check_thresholds({"min_top1_agreement": 1}, "target t gate") == {"min_top1_agreement": 1.0}
    with pytest.raises(GPruneError, match="^target t gate: unknown threshold key"):
        gate.check_thresholds({"max_perplexity_ratoi": 1.2}, "target t gate")


def test_default_backend_from_artifact(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    assert default_backend("x/model.gguf") == "llama.cpp"
    assert default_backend(tmp_path) == "onnxruntime"
    assert default_backend(tmp_path / "model.onnx") == "onnxruntime"
    assert default_backend("smollm2-135m") == "torch"


def test_missing_package_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(GPruneError, match="needs package llama_cpp: pip install"):
        load_backend("llama.cpp", tmp_path / "x.gguf")


def _invoke(args):
    return CliRunner().invoke(cli, ["verify", *map(str, args)])


def _assert_one_line_error(result, out, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


def test_cli_bad_inputs(tiny_dir, tmp_path):
    out = tmp_path / "out"
    _assert_one_line_error(_invoke([tmp_path / "missing", "--baseline", tiny_dir, "--out", out]), out,
                           "no such file")
    bad_gguf = tmp_path / "bad.gguf"
    bad_gguf.write_bytes(b"GGUF" + b"\0" * 64)
    _assert_one_line_error(_invoke([bad_gguf, "--baseline", tiny_dir, "--out", out]), out,
                           "llama.cpp cannot load")
    _assert_one_line_error(_invoke([tiny_dir, "--baseline", tiny_dir, "--tasks", "arc_easy,nosuchtask",
                                    "--out", out]), out, "unknown task 'nosuchtask'")
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text("max_perplexity_ratio: 1.1\nmin_speedup: 2\n")
    _assert_one_line_error(_invoke([tiny_dir, "--baseline", tiny_dir, "--gate", gate_file, "--out", out]), out,
                           "unknown threshold key(s) min_speedup")


def test_cli_backend_not_installed(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = tmp_path / "out"
    (tmp_path / "m.onnx").write_bytes(b"")
    _assert_one_line_error(_invoke([tmp_path / "m.onnx", "--baseline", tiny_dir, "--out", out]), out,
                           "backend onnxruntime needs package onnxruntime")


def test_cli_tiny_end_to_end_with_gate(tiny_dir, tmp_path):
    """Dense against itself: every figure measured, the report written, the gate passes."""
    gate_file = tmp_path / "gate.json"
    gate_file.write_text(json.dumps({"max_accuracy_drop": 0.0, "max_perplexity_ratio": 1.0001,
                                     "min_top1_agreement": 1.0, "max_peak_memory_mb": 100000}))
    out = tmp_path / "report"
    result = _invoke([tiny_dir, "--baseline", tiny_dir, "--tasks", "arc_easy,lambada", "--limit", 3,
                      "--distributions", "news", "--windows", 2, "--seq-len", 64, "--pairs", 1,
                      "--gate", gate_file, "--out", out])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output
    report = json.loads((out / "report.json").read_text())
    assert Report.from_dict(report).to_dict() == report
    run = report["candidates"][0]
    assert run["comparison"]["max_perplexity_ratio"] == pytest.approx(1.0)
    assert run["parity"]["top1_agreement"] == 1.0
    assert run["speed"]["ratio"]["decode_tok_s"]["median"] > 0
    assert run["memory"]["peak_rss_mb"] > run["memory"]["before_load_mb"] > 0
    assert report["environment"]["threads"] == 1 and report["environment"]["packages"]["torch"]
    assert set(run["tasks"]) == {"arc_easy", "lambada"} and run["tasks"]["arc_easy"]["n"] == 3
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "## torch" in (out / "report.md").read_text()
    assert math.isfinite(run["perplexity"]["news"]["perplexity"])
