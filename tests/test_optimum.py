"""A uniform-width ONNX export of the real SmolLM2-135M, head-pruned (2 of 3 KV groups, so head_dim
is no longer hidden / heads) with compensation biases, loads in optimum's ORTModelForCausalLM and its
tokenizer in transformers 4.x, and generates torch's greedy tokens. optimum needs transformers<4.58, so
it runs in its own venv, .venv-optimum (scripts/setup.sh, pins in scripts/optimum-requirements.txt),
through tests/optimum_generate.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from edgecore.checkpoint import save_checkpoint
from edgecore.loading import load_model
from gprune.surgery import LayerKeep, resize
from gprune_edge.export import export
from runtime_checks.backends.torch_backend import TorchBackend

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
OPTIMUM_PYTHON = ROOT / ".venv-optimum" / "bin" / "python"
PROMPT, NEW_TOKENS = "The capital of France is", 12

needs_optimum = pytest.mark.skipif(not OPTIMUM_PYTHON.exists(),
                                   reason="no .venv-optimum: scripts/setup.sh creates it (optimum-onnx needs "
                                          "transformers<4.58, which cannot share the project's venv)")


@pytest.fixture(scope="module")
def head_pruned(tmp_path_factory, smollm2_dir):
    model, tokenizer = load_model(str(smollm2_dir))
    g = torch.Generator().manual_seed(0)
    keep = [LayerKeep(torch.randperm(1536, generator=g)[:1280].sort().values, torch.tensor([0, 2]),
                      down_bias=torch.randn(576, generator=g) * 0.01) for _ in range(30)]
    pruned = resize(model, keep).eval()
    folder = save_checkpoint(pruned, tokenizer, tmp_path_factory.mktemp("optimum") / "pruned")
    onnx_dir = export(folder, "onnx", "fp32", folder.parent / "onnx", threads=2).path
    ids = tokenizer(PROMPT)["input_ids"]
    expected = TorchBackend.from_model(pruned, tokenizer).generate(ids, NEW_TOKENS).tokens
    return onnx_dir, ids, expected


def _optimum(onnx_dir, *flags):
    return subprocess.run([str(OPTIMUM_PYTHON), str(ROOT / "tests" / "optimum_generate.py"), str(onnx_dir), PROMPT,
                           str(NEW_TOKENS), *flags], capture_output=True, text=True, check=False)


def test_the_folder_describes_a_stock_llama(head_pruned):
    config = json.loads((head_pruned[0] / "config.json").read_text())
    assert config["model_type"] == "llama" and config["head_dim"] == 64 and config["num_attention_heads"] == 6
    assert config["down_proj_bias"] is True  # noted; the biases themselves are in the graph


@needs_optimum
def test_optimum_generates_torchs_tokens(head_pruned):
    onnx_dir, ids, expected = head_pruned
    done = _optimum(onnx_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["prompt_ids"] == ids  # transformers 4.x reads the tokenizer as 5.x does
    assert out["tokens"] == expected


@needs_optimum
def test_optimum_alone_ignores_head_dim(head_pruned):
    """Why the workaround: optimum-onnx 0.1.0 sizes the empty cache as hidden / heads = 96, not 64.
    When this starts passing, optimum is fixed and the README's workaround can go."""
    done = _optimum(head_pruned[0], "--stock")
    assert done.returncode != 0 and "Expected: 64" in done.stderr
