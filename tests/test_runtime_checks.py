"""runtime_checks on tiny random models: scorer correctness, parity metrics, gate, CLI errors."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_model, tiny_tokenizer

from gprune_edge.cli import cli
from edgecore.errors import GPruneError
from runtime_checks import gate
from runtime_checks.backends import default_backend, load_backend
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.loglik import _score_by_logits, encode_pair, score
from runtime_checks.parity import compare_logits


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


def _report(ppl_ratio=1.0, acc_delta=0.0, decode=1.2, memory=300.0, top1=0.99):
    comparison = {"mean_accuracy": {"delta": acc_delta}, "max_perplexity_ratio": ppl_ratio,
                  "speed_ratio": {"decode_tok_s": decode} if decode else None}
    return {"candidates": [{"backend": "torch", "comparison": comparison, "memory": {"peak_rss_mb": memory},
                            "parity": {"top1_agreement": top1}}]}


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
