"""`torchrun --nproc_per_node 2` (gloo, CPU) gives what one process gives: `prune` splits the calibration
and reconstruction windows and gives the statistics (to float tolerance), widths and weights of one
process; `recover` (data-parallel distillation) at the same global batch gives the same weights."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_model, tiny_tokenizer

from edgecore.run_context import RunContext
from gprune.prune import prune
from gprune.recipe import PruneRecipe
from recovery.config import DistillConfig
from recovery.distill import recover

SETTINGS = dict(sparsity=0.3, align=8, n_samples=4, seq_len=32)


TESTS = os.path.dirname(os.path.abspath(__file__))


def launch(*args, timeout=600, **env) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 ARGS` on one thread per process; it must succeed."""
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *map(str, args)], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-2000:]
    return run


def torchrun(*args, timeout=600) -> subprocess.CompletedProcess:
    run = launch("-m", "gprune_edge", *args, timeout=timeout)
    assert run.stdout.count("saved to") == 1  # one line, from rank 0
    return run


# few tokens: reconstruction fits down_proj from the tokens themselves, gathered from both processes
FEW_TOKENS = dict(SETTINGS, n_samples=2, seq_len=8)


@pytest.mark.parametrize("settings", [SETTINGS, FEW_TOKENS], ids=["normal-equations", "few-tokens"])
def test_two_processes_give_the_statistics_and_model_of_one(tmp_path, settings):
    source = tmp_path / "dense"
    tiny_model("llama", layers=3).save_pretrained(source)
    tiny_tokenizer().save_pretrained(source)
    prune(PruneRecipe(model=str(source), **settings), tmp_path / "one",
          context=RunContext(device="cpu", calib_cache=str(tmp_path / "calib-one")))

    options = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    torchrun("prune", "--model", source, *options, "--device", "cpu", "--calib-cache", tmp_path / "calib-two",
             "--out", tmp_path / "two")

    (one,), (two,) = (list((tmp_path / f"calib-{n}").iterdir()) for n in ("one", "two"))
    assert one.name == two.name  # the same cache key
    assert json.loads((two / "meta.json").read_text())["timing"]["processes"] == 2
    for layer in sorted(one.glob("layer-*.safetensors")):
        a, b = load_file(layer), load_file(two / layer.name)
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9, msg=f"{layer.name} {name}")

    summaries = [json.loads((tmp_path / n / "prune_summary.json").read_text()) for n in ("one", "two")]
    assert summaries[0]["layers"] == summaries[1]["layers"]
    tokens = summaries[0]["diagnostics"]["reconstruction"]["tokens"]  # fewer than some layer's neurons: gathered
    assert (tokens < max(layer["ffn"] for layer in summaries[0]["layers"])) == (settings is FEW_TOKENS)
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_distill_the_weights_of_one(tmp_path):
    dense = tmp_path / "dense"
    tiny_model("llama", layers=2).save_pretrained(dense)
    tiny_tokenizer().save_pretrained(dense)
    prune(PruneRecipe(model=str(dense), method="magnitude", sparsity=0.3, align=8), tmp_path / "pruned",
          context=RunContext(device="cpu"))
    text = tmp_path / "text.txt"  # characters the tiny tokenizer maps one to one
    text.write_text("\n\n".join("".join(chr(33 + (i * 7 + j * j) % 90) for j in range(700)) for i in range(6)))
    steps, seq, batch = 4, 32, 4  # one process: 4 windows a step; two: 2 each
    cfg = DistillConfig(tokens=steps * seq * batch, seq_len=seq, batch_size=batch, lr=3e-3, data=[str(text)],
                        save_steps=2, eval_windows=1, seed=3)
    recover(tmp_path / "pruned", cfg, tmp_path / "one", teacher=str(dense), progress=False)

    run = torchrun("recover", tmp_path / "pruned", "--teacher", dense, "--tokens", cfg.tokens, "--seq-len", seq,
                   "--batch-size", batch // 2, "--lr", cfg.lr, "--data", text, "--save-steps", 2, "--eval-windows", 1,
                   "--seed", 3, "--device", "cpu", "--out", tmp_path / "two")
    record = json.loads((tmp_path / "two" / "recovery.json").read_text())
    assert record["processes"] == 2 and record["steps"] == steps, run.stdout
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    moved = 0
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-4, msg=name)
        moved += not torch.equal(a[name], load_file(tmp_path / "pruned" / "model.safetensors")[name])
    assert moved  # training changed the weights: the comparison is not of two untouched copies


@pytest.mark.parametrize("tie", ["tie", "untie"])
def test_the_distillation_loss_gives_one_process_gradients_under_fsdp2(tie):
    """The loss reads the output layer's weight after the forward: FSDP2 keeps its root (embedding, final
    norm, output layer) unsharded until the backward, so the sharded student gets the gradients of one
    process. (recover itself runs FSDP only where accelerate enables it, on accelerators: not testable here.)"""
    run = launch(os.path.join(TESTS, "fsdp_kd_worker.py"), tie, timeout=300,
                 PYTHONPATH=os.pathsep.join([TESTS, os.path.dirname(TESTS)]))  # tiny.py, the project
    assert run.stdout.count("largest gradient difference") == 2
