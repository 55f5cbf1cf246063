"""Tiny random-weight Llama, Mistral, Qwen2, Qwen3 and Gemma 3 models (and a tokenizer) for fast tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM),
}
VOCAB = 128


def tiny_model(family: str = "llama", seed: int = 0, layers: int = 3, tie: bool = True, **overrides):
    config_class, model_class = FAMILIES[family]
    fields = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256, tie_word_embeddings=tie,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gemma3":  # a window shorter than the test sequences (layer kinds: Gemma 3's, every 6th global)
        fields.update(head_dim=16, query_pre_attn_scalar=16, sliding_window=8)
    config = config_class(**{**fields, **overrides})
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():  # default init makes near-zero outputs; spread the weights so pruning matters
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [chr(c) for c in range(33, 33 + VOCAB - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def random_ids(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)
