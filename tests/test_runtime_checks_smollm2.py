"""runtime_checks on the real SmolLM2-135M: llama.cpp against torch, and the gate on a
deliberately degraded (heavily magnitude-pruned) model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgecore.loading import builtin_gguf
from gprune.prune import prune
from gprune.recipe import PruneRecipe
from gprune_edge.cli import cli
from runtime_checks.backends import load_backend
from runtime_checks.loglik import _score_by_logits, score
from runtime_checks.parity import compare_backends
from runtime_checks.verify import fixed_text_ids, load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends(smollm2_dir):
    torch_backend = load_backend("torch", smollm2_dir, threads=1)
    llama = load_backend("llama.cpp", builtin_gguf(), threads=1)
    yield torch_backend, llama
    llama.close()


def test_llama_cpp_loads_the_package_gguf_and_agrees_with_torch(backends, smollm2_dir):
    torch_backend, llama = backends
    ids = fixed_text_ids(load_tokenizer(smollm2_dir), 128)
    parity = compare_backends(torch_backend, llama, ids)
    # the GGUF is Q4_1 and the HF model its exact fp32 dequantization: only llama.cpp's
    # quantized activations (q8 dot products) separate them
    assert parity.top1_agreement >= 0.9
    assert parity.kl_mean < 0.02
    assert abs(parity.ppl_ratio - 1) < 0.05
    timing = llama.generate(ids[:16], 8)
    assert len(timing.tokens) == 8 and timing.decode_tok_s > 0


def test_llama_cpp_cached_context_scoring_matches_full_evaluation(backends):
    _, llama = backends
    items = [([504, 3458, 314, 4649, 314], [[2694, 30], [1163], [22, 33, 44]]), ([1, 2, 3], [[4, 5]])]
    cached = score(llama, items)  # context evaluated once, choices rewound onto the KV cache
    full = _score_by_logits(llama, items, 2048)  # every choice from scratch
    for c_row, f_row in zip(cached, full):
        for c, f in zip(c_row, f_row):
            assert c.logprob == pytest.approx(f.logprob, abs=0.02)


@pytest.fixture(scope="module")
def degraded_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "smollm2-magnitude-50"
    prune(PruneRecipe(method="magnitude", sparsity=0.5), out)
    return out


def _verify_with_gate(artifact, baseline, tmp_path, name):
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text("max_perplexity_ratio: 1.5\nmax_accuracy_drop: 0.05\n")
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["verify", str(artifact), "--baseline", str(baseline), "--tasks", "arc_easy",
                                      "--limit", "12", "--distributions", "wiki", "--windows", "2", "--seq-len",
                                      "128", "--pairs", "0", "--no-memory", "--gate", str(gate_file),
                                      "--out", str(out)])
    return result, out


def test_gate_fails_on_degraded_model(degraded_dir, smollm2_dir, tmp_path):
    result, out = _verify_with_gate(degraded_dir, smollm2_dir, tmp_path, "degraded")
    assert result.exit_code == 3, result.output
    assert "gate FAILED: max_perplexity_ratio" in result.output
    report = json.loads((out / "report.json").read_text())  # the report is written either way
    assert report["gate"]["passed"] is False
    assert report["candidates"][0]["comparison"]["max_perplexity_ratio"] > 1.5


def test_gate_passes_dense_against_dense(smollm2_dir, tmp_path):
    result, out = _verify_with_gate(smollm2_dir, smollm2_dir, tmp_path, "dense")
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output
    assert json.loads((out / "report.json").read_text())["gate"]["passed"] is True
