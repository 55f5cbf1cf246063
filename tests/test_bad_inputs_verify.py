"""What `verify` refuses: the catalogue of bad inputs to `gprune-edge verify` and runtime_checks.

Each input is refused in one line naming the option (or the models) and the bad value, with
the valid range or what to do, exit status 1, and no output directory. Covered here:
  - an artifact and a baseline of different vocabularies, either way round, and a tokenizer
    that knows more tokens than the models (checked once the models are loaded, before any
    evaluation); the same in the export check (check_export)
  - out-of-range counts: --limit negative, --windows 0, --seq-len 0 and 100000, --threads -4,
    --pairs -1, --max-pairs below --pairs, --target-width and --max-seconds negative (on the CLI,
    before any model is loaded), and the same fields of VerifySettings / SpeedSettings (also a
    confidence of 1), however they are built
  - unknown task and text distribution names
  - gate thresholds that are negative, NaN or infinite, or not numbers
Tiny random models (tests/tiny.py): every case runs in seconds."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from export_helpers import needs_llama_cpp, write
from tiny import VOCAB, tiny_model, tiny_tokenizer

from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError
from gprune_edge.cli import cli
from runtime_checks import gate
from runtime_checks.settings import SpeedSettings, VerifySettings
from runtime_checks.verify import run_verification

BIGGER, SMALLER = VOCAB + 32, VOCAB - 32
FAST = ["--tasks", "none", "--distributions", "none", "--pairs", 0, "--no-memory"]  # nothing slow, if it got that far


def _tiny_dir(path, vocab: int = VOCAB):
    """A tiny model directory whose vocabulary has `vocab` tokens (the tokenizer keeps its VOCAB)."""
    model = tiny_model()
    if vocab != VOCAB:
        model.resize_token_embeddings(vocab, mean_resizing=False)
    save_checkpoint(model, tiny_tokenizer(), path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return {vocab: _tiny_dir(root / f"v{vocab}", vocab) for vocab in (VOCAB, BIGGER, SMALLER)}


def _invoke(*args):
    return CliRunner().invoke(cli, ["verify", *map(str, args)])


def _refused(result, out, *fragments) -> str:
    """Exit 1, exactly one `Error:` line (progress bars of model loading aside) holding every fragment,
    no traceback, and no output directory."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "Error" in line]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert not out.exists()
    return errors[0]


def _refused_call(call, *fragments) -> str:
    with pytest.raises(GPruneError) as raised:
        call()
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------ vocabularies

@needs_llama_cpp
def test_artifact_vocabulary_bigger_than_baseline(models, tmp_path):
    from exporters import load_source

    gguf = write(load_source(models[BIGGER]), "gguf", "f32", tmp_path / "big.gguf").path
    out = tmp_path / "out"
    _refused(_invoke(gguf, "--baseline", models[VOCAB], *FAST, "--out", out), out,
             "vocabularies differ", f"has {BIGGER} tokens", f"has {VOCAB}", "share one tokenizer")


def test_artifact_vocabulary_smaller_than_baseline(models, tmp_path):
    out = tmp_path / "out"
    _refused(_invoke(models[SMALLER], "--baseline", models[VOCAB], *FAST, "--out", out), out,
             "vocabularies differ", f"has {SMALLER} tokens", f"has {VOCAB}")


def test_tokenizer_beyond_the_vocabulary(models, tmp_path):
    # both models agree (SMALLER) but their tokenizer produces ids up to VOCAB - 1
    out = tmp_path / "out"
    _refused(_invoke(models[SMALLER], "--baseline", models[SMALLER], *FAST, "--out", out), out,
             f"has {VOCAB} tokens, more than the {SMALLER}", "--tokenizer")


def test_vocabulary_checked_before_any_evaluation(models, monkeypatch):
    import runtime_checks.verify as verify_module

    def evaluated(*args, **kwargs):
        raise AssertionError("evaluation started before the vocabularies were compared")

    monkeypatch.setattr(verify_module, "_run", evaluated)
    _refused_call(lambda: run_verification(models[SMALLER], models[VOCAB], settings=VerifySettings(
        tasks=(), distributions=(), speed=None, memory=False)), "vocabularies differ")


@needs_llama_cpp
def test_export_check_vocabulary_mismatch(models, tmp_path):
    from exporters import load_source
    from runtime_checks.export_parity import check_export

    gguf = write(load_source(models[BIGGER]), "gguf", "f32", tmp_path / "big.gguf").path
    _refused_call(lambda: check_export(gguf, "llama.cpp", tiny_model(), tiny_tokenizer(), "f32"),
                  "vocabularies differ", f"has {BIGGER} tokens", f"has {VOCAB}")


# ------------------------------------------------------------------ counts out of range (CLI, before loading)

@pytest.mark.parametrize("option, value, expected", [
    ("--limit", -3, "--limit must be at least 0 (0 for every question), got -3"),
    ("--windows", 0, "--windows must be at least 1, got 0"),
    ("--seq-len", 0, "--seq-len must be between 2 and 8192, got 0"),
    ("--seq-len", 100000, "--seq-len must be between 2 and 8192, got 100000"),
    ("--threads", -4, "--threads must be at least 1, got -4"),
    ("--pairs", -1, "--pairs must be at least 0 (0 skips speed), got -1"),
    ("--max-pairs", 3, "--max-pairs must be at least 7 (--pairs), got 3"),
    ("--target-width", -0.1, "--target-width must be at least 0.0, got -0.1"),
    ("--max-seconds", -5, "--max-seconds must be at least 0.0, got -5.0"),
])
def test_cli_count_out_of_range(option, value, expected, tmp_path, monkeypatch):
    import runtime_checks.verify as verify_module

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(verify_module, "load_backend", loaded)
    out = tmp_path / "out"
    missing = tmp_path / "no-such-model"  # the option is refused before the models are even looked at
    assert _refused(_invoke(missing, "--baseline", missing, option, value, "--out", out), out) == f"Error: {expected}"


def test_cli_limit_zero_still_means_every_question():
    from gprune_edge.cli.verify import check_options

    check_options(("arc_easy",), ("wiki",), 0, 1, 2, 1, 0)  # --limit 0 and --pairs 0 keep their meaning


def test_cli_unknown_task(tmp_path):
    out = tmp_path / "out"
    _refused(_invoke(tmp_path, "--baseline", tmp_path, "--tasks", "arc_easy,nosuchtask", "--out", out), out,
             "--tasks: unknown task 'nosuchtask'", "known: arc_easy")


def test_cli_unknown_distribution(tmp_path):
    out = tmp_path / "out"
    _refused(_invoke(tmp_path, "--baseline", tmp_path, "--distributions", "wiki,wikipedia", "--out", out), out,
             "--distributions: unknown text distribution 'wikipedia'", "hf:DATASET", ".txt/.jsonl")


# ------------------------------------------------------------------ the settings themselves (build.json, report.json)

@pytest.mark.parametrize("settings, expected", [
    (dict(limit=0), "verify settings option 'limit' must be at least 1 (null for every question), got 0"),
    (dict(max_windows=0), "verify settings option 'max_windows' must be at least 1, got 0"),
    (dict(seq_len=100000), "verify settings option 'seq_len' must be between 2 and 8192, got 100000"),
    (dict(parity_tokens=1), "verify settings option 'parity_tokens' must be between 2 and 8192, got 1"),
    (dict(threads=-4), "verify settings option 'threads' must be at least 1, got -4"),
    (dict(tasks=["nosuchtask"]), "verify settings option 'tasks': unknown task 'nosuchtask'"),
    (dict(distributions=["hf:"]), "verify settings option 'distributions': bad hub text source 'hf:'"),
    (dict(speed={"pairs": -1}), "speed settings option 'pairs' must be at least 1 (set speed to null"),
    (dict(speed={"decode_tokens": 0}), "speed settings option 'decode_tokens' must be between 1 and 8192, got 0"),
    (dict(speed={"pairs": 9, "max_pairs": 5}), "speed settings option 'max_pairs' must be at least pairs (9), got 5"),
    (dict(speed={"confidence": 1.0}), "speed settings option 'confidence' must be between 0.5 and 0.999, got 1.0"),
])
def test_settings_out_of_range(settings, expected):
    assert _refused_call(lambda: VerifySettings.from_dict(settings)).startswith(expected)


def test_settings_refused_however_built():
    _refused_call(lambda: SpeedSettings(threads=0), "speed settings option 'threads' must be at least 1, got 0")
    _refused_call(lambda: VerifySettings().replace(seq_len=0), "'seq_len' must be between 2 and 8192, got 0")
    # None keeps its meaning: every question, the runtime's default threads; files and hub sources pass
    VerifySettings(limit=None, threads=None, distributions=("hf:owner/name:test@text", "mine.jsonl"))


# ------------------------------------------------------------------ gate thresholds

@pytest.mark.parametrize("text, expected", [
    ("max_perplexity_ratio: -1.5\n", "max_perplexity_ratio must be a number >= 0, got -1.5"),
    ("max_accuracy_drop: .nan\n", "max_accuracy_drop must be a number from 0 to 1, got nan"),
    ("min_decode_speedup: .inf\n", "min_decode_speedup must be a number >= 0, got inf"),
    ("min_top1_agreement: 1.5\n", "min_top1_agreement must be a number from 0 to 1, got 1.5"),
    ("max_peak_memory_mb: '400'\n", "max_peak_memory_mb must be a number >= 0, got '400'"),
    ("max_peak_memory_mb: [400]\n", "max_peak_memory_mb must be a number >= 0, got [400]"),
])
def test_gate_threshold_out_of_range_or_not_a_number(text, expected, tmp_path):
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text(text)
    assert _refused_call(lambda: gate.load_thresholds(gate_file)) == f"{gate_file}: {expected}"


@pytest.mark.parametrize("thresholds, fragment", [
    ({"max_perplexity_ratio": -1}, "max_perplexity_ratio must be a number >= 0, got -1"),
    ({"min_decode_speedup": "fast"}, "min_decode_speedup must be a number >= 0, got 'fast'"),
])
def test_cli_gate_threshold_refused(thresholds, fragment, tmp_path):
    gate_file = tmp_path / "gate.json"
    gate_file.write_text(json.dumps(thresholds))
    out = tmp_path / "out"
    _refused(_invoke(tmp_path, "--baseline", tmp_path, "--gate", gate_file, "--out", out), out, fragment)
