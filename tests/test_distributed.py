"""`torchrun --nproc_per_node 2 -m gprune_edge prune` (gloo, CPU): the processes split the calibration and
reconstruction windows and give the statistics (to float tolerance), widths and weights of one process."""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file
from tiny import tiny_model, tiny_tokenizer

from edgecore.run_context import RunContext
from gprune.prune import prune
from gprune.recipe import PruneRecipe

SETTINGS = dict(sparsity=0.3, align=8, n_samples=4, seq_len=32)


def test_two_processes_give_the_statistics_and_model_of_one(tmp_path):
    source = tmp_path / "dense"
    tiny_model("llama", layers=3).save_pretrained(source)
    tiny_tokenizer().save_pretrained(source)
    prune(PruneRecipe(model=str(source), **SETTINGS), tmp_path / "one",
          context=RunContext(device="cpu", calib_cache=str(tmp_path / "calib-one")))

    options = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "gprune_edge", "prune", "--model", str(source), *options, "--device", "cpu",
                          "--calib-cache", str(tmp_path / "calib-two"), "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("saved to") == 1  # one line, from rank 0

    (one,), (two,) = (list((tmp_path / f"calib-{n}").iterdir()) for n in ("one", "two"))
    assert one.name == two.name  # the same cache key
    assert json.loads((two / "meta.json").read_text())["timing"]["processes"] == 2
    for layer in sorted(one.glob("layer-*.safetensors")):
        a, b = load_file(layer), load_file(two / layer.name)
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9, msg=f"{layer.name} {name}")

    summaries = [json.loads((tmp_path / n / "prune_summary.json").read_text()) for n in ("one", "two")]
    assert summaries[0]["layers"] == summaries[1]["layers"]
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
