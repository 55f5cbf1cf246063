"""Settings the tool checks before any work, so that a typo costs seconds, not a 45-minute
build: target profiles (budgets, field types, the first layout's gate keys), devices, method options,
calibration sizes, threads. Each is one `Error:` line naming the setting, exit status 1, and
no output. (Verification settings and gate files: test_bad_inputs_verify.py.)"""

import pytest
import torch
from bad_inputs import no_leftovers, refused, run, tiny_dir, write_target


@pytest.fixture
def model(tmp_path):
    return tiny_dir(tmp_path / "model")


@pytest.mark.parametrize("fields, needle", [
    ({"max_perplexity_ratoi": 2.0}, "has no option 'max_perplexity_ratoi'"),
    ({"max_perplexity_ratio": "2"}, "max_perplexity_ratio"),
    ({"memory_mb": -5}, "memory_mb must be above 0"),
    ({"align": "32"}, "'align' must be int"),
    ({"artifacts": "gguf:f16"}, "'artifacts' must be a list"),
    ({"version": 1, "sparsity": 0.2, "gate": {"max_perplexity_ratoi": 2.0}}, "gate key max_perplexity_ratoi has no"),
    ({"threads": 0}, "threads"),
    ({"sources": {"memory": "a guess"}}, "sources names no figure memory"),
], ids=["typo", "string", "negative", "align-string", "artifacts-string", "first-layout-gate-typo", "threads",
        "source-typo"])
def test_a_bad_target_profile_fails_before_pruning(tmp_path, model, fields, needle):
    out = tmp_path / "build"
    refused(run("build", "--target", write_target(tmp_path / "t.json", **fields), "-m", model, "--out", out), needle)
    no_leftovers(out)


@pytest.mark.parametrize("args, needle", [
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--option", "modules=abc"], "'modules' must be int, got 'abc'"),
    (["--option", "modules=0"], "'modules' must be at least 1"),
    (["--option", "modules=-3"], "'modules' must be at least 1"),
    (["--option", "lam=NaN"], "'lam' must be a finite number"),
    (["--seq-len", "0"], "seq_len"),
    (["--seq-len", "100000"], "seq_len"),
    (["--n-samples", "0"], "n_samples"),
    (["--align", "0"], "alignment must be a positive integer"),
    (["-s", "1.2"], "sparsity must be in [0, 1)"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_bad_prune_settings_fail_before_loading_the_model(tmp_path, model, args, needle):
    out = tmp_path / "out"
    refused(run("prune", "-m", model, "-s", 0.2, "--align", 8, *args, "--out", out), needle)
    no_leftovers(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(tmp_path, model):
    refused(run("prune", "-m", model, "-s", 0.2, "--align", 8, "--device", "cuda", "--out", tmp_path / "o"),
            "CUDA is not available")


def test_negative_threads_are_refused(tmp_path, model):
    refused(run("export", model, "--format", "gguf", "--dtype", "f16", "--threads", -4, "--out", tmp_path / "o.gguf"),
            "threads must be at least 1, got -4")
    refused(run("build", "--target", write_target(tmp_path / "t.json"), "-m", model, "--threads", -4,
                "--out", tmp_path / "b"), "threads must be at least 1, got -4")
    no_leftovers(tmp_path / "b")
