"""runtime_checks.baseline_cache: a verification reuses the baseline's measured Run when nothing
that changes its figures has changed, and measures it again otherwise (tiny random models)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from tiny import tiny_model, tiny_tokenizer

from runtime_checks import baseline_cache, verify
from runtime_checks.settings import VerifySettings

SETTINGS = VerifySettings(tasks=("arc_easy",), distributions=("news",), limit=2, max_windows=1, seq_len=32,
                          parity_tokens=16, speed=None, memory=False)


def _save(path, seed):
    tiny_model(seed=seed).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    return _save(tmp / "baseline", 0), _save(tmp / "candidate", 1)


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """The cache in a fresh folder; the list of models whose Run verify measured."""
    monkeypatch.setattr(baseline_cache, "directory", lambda: tmp_path / "cache")
    runs = []
    real = verify._run

    def counting(backend, spec, *args):
        runs.append(spec)
        return real(backend, spec, *args)

    monkeypatch.setattr(verify, "_run", counting)
    return runs


def _verify(models, settings=SETTINGS, baseline=None):
    baseline_dir, candidate = models
    return verify.run_verification(candidate, baseline or baseline_dir, settings=settings, reuse_baseline=True)


def test_second_run_takes_the_baseline_from_the_cache(models, measured):
    baseline, candidate = models
    first = _verify(models)
    assert measured == [baseline, candidate] and first.baseline_cached is None
    second = _verify(models)
    assert measured == [baseline, candidate, candidate]  # the baseline was not evaluated again
    assert second.baseline_cached  # the date it was measured
    assert second.baseline_run.to_dict() == first.baseline_run.to_dict()
    assert second.candidates[0].comparison.to_dict() == first.candidates[0].comparison.to_dict()
    assert second.candidates[0].parity == first.candidates[0].parity  # recomputed from the baseline's logits


def test_without_reuse_the_baseline_is_measured(models, measured):
    _verify(models)
    verify.run_verification(models[1], models[0], settings=SETTINGS)
    assert measured.count(models[0]) == 2


def test_a_changed_setting_misses(models, measured):
    _verify(models)
    _verify(models, dataclasses.replace(SETTINGS, limit=3))
    assert measured.count(models[0]) == 2


@pytest.mark.parametrize("change", [{"limit": 3}, {"seed": 1}, {"seq_len": 16}, {"max_windows": 2},
                                    {"tasks": ("piqa",)}, {"distributions": ("wiki",)}, {"threads": 2},
                                    {"memory": True}, {"context_length": 512}, {"flash_attention": True}])
def test_key_covers_every_setting_of_the_run(models, change):
    assert (baseline_cache.key(models[0], "torch", dataclasses.replace(SETTINGS, **change))
            != baseline_cache.key(models[0], "torch", SETTINGS))


def test_key_ignores_what_does_not_reach_the_run(models):
    other = dataclasses.replace(SETTINGS, parity_tokens=64, speed=VerifySettings().speed)
    assert baseline_cache.key(models[0], "torch", other) == baseline_cache.key(models[0], "torch", SETTINGS)


def test_key_follows_the_bytes_not_the_path(models, tmp_path, measured):
    copy = shutil.copytree(models[0], tmp_path / "copy")
    assert baseline_cache.key(copy, "torch", SETTINGS) == baseline_cache.key(models[0], "torch", SETTINGS)
    _verify(models)
    report = _verify(models, baseline=copy)  # same bytes elsewhere: a hit, with the copy's footprint
    assert report.baseline_cached and report.baseline_run.artifact.path == str(copy)
    config = copy / "config.json"
    config.write_text(config.read_text() + " ")
    assert baseline_cache.key(copy, "torch", SETTINGS) != baseline_cache.key(models[0], "torch", SETTINGS)
    _verify(models, baseline=copy)
    assert measured == [models[0], models[1], models[1], copy, models[1]]


def test_key_covers_backend_and_tokenizer(models):
    plain = baseline_cache.key(models[0], "torch", SETTINGS)
    assert baseline_cache.key(models[0], "onnxruntime", SETTINGS) != plain
    assert baseline_cache.key(models[0], "torch", SETTINGS, tokenizer_from=models[1]) != plain
    assert baseline_cache.key("someone/some-model", "torch", SETTINGS) is None  # a hub id: never cached


def test_a_damaged_entry_is_measured_again_and_rewritten(models, measured):
    _verify(models)
    [entry] = (baseline_cache.directory()).glob("*.json")
    entry.write_text('{"format": 1, "key": "')  # a half-written file (what write_atomic never leaves)
    report = _verify(models)
    assert measured.count(models[0]) == 2 and report.baseline_cached is None
    assert json.loads(entry.read_text())["run"] == report.baseline_run.to_dict()
    assert _verify(models).baseline_cached  # and it is used again
