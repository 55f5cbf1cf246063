"""Round trips of the real Gemma 3 270M (the second built-in model): its GGUF as this project writes
it tokenizes as transformers does and gives torch's predictions; GPrune at 35% in the stock layout
llama.cpp's gemma3 needs (uniform widths, no added biases, reconstructed) reloads and exports to a
GGUF that passes the parity gate; per-layer widths are refused for GGUF in one line."""

from __future__ import annotations

import pytest
import torch

from edgecore.errors import GPruneError
from edgecore.families import fits_stock_layout
from edgecore.loading import GEMMA3_270M, builtin_hf_dir, load_model
from gprune.prune import prune
from gprune.recipe import PruneRecipe
from gprune_edge.export import export
from runtime_checks.backends import load_backend

pytestmark = pytest.mark.slow

MIXED_TEXT = ("def f(x):\n\treturn x ** 2  # square\n\n\n    indented   runs   of spaces\n"
              "Unicode: café, naïve, Zürich, 東京, Привет, emoji 🙂 — and digits 1234567 3.14159\r\n"
              "<start_of_turn>user\nHi!<end_of_turn>")
SMALL_CALIBRATION = dict(n_samples=4, seq_len=128)  # the path, not the quality (BENCHMARKS.md has that)


@pytest.fixture(scope="module")
def gemma3_dir():
    return builtin_hf_dir(GEMMA3_270M)


def test_dense_gguf_tokenizes_and_predicts_as_transformers(gemma3_dir, tmp_path):
    result = export(gemma3_dir, "gguf", "f16", tmp_path / "dense-f16.gguf", threads=2)  # parity gated
    assert result.architecture == "gemma3" and result.parity["top1_agreement"] >= 0.98
    _, tokenizer = load_model(str(gemma3_dir))
    with load_backend("llama.cpp", result.path, threads=1) as backend:
        for text in (MIXED_TEXT, "  leading and trailing  ", "Spaced , as written . It 's 42 ! 2024-11-24"):
            expected = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert backend._llm.tokenize(text.encode(), add_bos=False, special=True) == expected, text
            assert backend._llm.detokenize(expected, special=True).decode() == tokenizer.decode(expected)


def test_gprune_stock_layout_reloads_and_exports(gemma3_dir, tmp_path):
    recipe = PruneRecipe(model=str(gemma3_dir), sparsity=0.35, **SMALL_CALIBRATION).stock_layout()
    prune(recipe, tmp_path / "p35", context=None)
    model, _ = load_model(str(tmp_path / "p35"))
    assert type(model).__name__ == "Gemma3ForCausalLM" and fits_stock_layout(model.config)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[2, 818, 5279]])).logits).all()
    result = export(tmp_path / "p35", "gguf", "f16", tmp_path / "p35-f16.gguf", threads=2)  # parity gated
    assert result.architecture == "gemma3" and result.generation_matches


def test_per_layer_widths_are_refused_for_gguf(gemma3_dir, tmp_path):
    recipe = PruneRecipe(model=str(gemma3_dir), method="magnitude", sparsity=0.3, reconstruct=False)
    prune(recipe, tmp_path / "m30")
    with pytest.raises(GPruneError, match="no architecture for a gemma3_text model with per-layer widths"):
        export(tmp_path / "m30", "gguf", "f16", tmp_path / "m30.gguf")
    assert not (tmp_path / "m30.gguf").exists()
