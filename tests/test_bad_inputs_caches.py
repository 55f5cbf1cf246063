"""Caches that must not turn one bad moment into permanent failure: a truncated calibration
cache entry is recomputed; a one-paragraph calibration file behaves the same whatever its
text. (Two processes filling the model cache at once: test_cache_race.py.)"""

import pytest
from bad_inputs import refused, run, tiny_dir
from tiny import tiny_model, tiny_tokenizer

from edgecore import textdata
from gprune.calibration import CalibConfig, cache_key, calibrate


def text_file(path, paragraphs):
    path.write_text("\n\n".join(paragraphs))
    return path


def paragraph(seed: int, length: int = 400) -> str:
    return "".join(chr(33 + (seed * 13 + j * 7) % 90) for j in range(length))


def test_a_truncated_calibration_cache_entry_is_recomputed(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    source = text_file(tmp_path / "calib.txt", [paragraph(i) for i in range(8)])
    cfg = CalibConfig(sources=(str(source),), n_samples=4, seq_len=32)
    first = calibrate(model, tok, cfg, tmp_path / "cache")
    stats = tmp_path / "cache" / cache_key(model, cfg) / "layer-00001.safetensors"
    stats.write_bytes(stats.read_bytes()[:200])  # damaged after it was published (a full disk, a copy cut short)
    again = calibrate(model, tok, cfg, tmp_path / "cache")
    assert not again.timing.get("cached") and again.layers[0][0].down.sum.equal(first.layers[0][0].down.sum)
    assert calibrate(model, tok, cfg, tmp_path / "cache").timing.get("cached")  # repaired


@pytest.mark.parametrize("seed", range(6))
def test_a_one_paragraph_file_is_always_calibration_text(tmp_path, seed):
    # before: each paragraph landed in the calibration or evaluation half by its hash (half failed)
    source = text_file(tmp_path / "one.txt", [paragraph(seed)])
    assert textdata.load_documents(str(source), "calib") == [paragraph(seed)]


def test_a_one_paragraph_file_says_what_evaluation_needs(tmp_path):
    source = text_file(tmp_path / "one.txt", [paragraph(0)])
    with pytest.raises(Exception, match="at least 2 documents"):
        textdata.load_documents(str(source), "eval")


def test_a_one_paragraph_file_too_short_to_calibrate_says_how_much_is_needed(tmp_path):
    model = tiny_dir(tmp_path / "m")
    source = text_file(tmp_path / "one.txt", [paragraph(1, 100)])
    out = tmp_path / "out"
    refused(run("prune", "-m", model, "--method", "flap", "-s", 0.2, "--align", 8, "--calib", source,
                "--n-samples", 4, "--seq-len", 64, "--out", out), "too few", "256 needed")
