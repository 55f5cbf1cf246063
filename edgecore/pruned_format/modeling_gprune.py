"""Llama and Gemma 3 decoders whose layers each have their own FFN width and head
counts. Every layer is the stock decoder layer (LlamaDecoderLayer, Qwen3DecoderLayer
for q/k norms, Gemma3DecoderLayer) built from that layer's sizes, so the forward
pass, KV cache and generate() are transformers' own. Self-contained (imports only
torch and transformers): it is copied into every checkpoint."""

from torch import nn
from transformers import GenerationMixin
from transformers.models.llama.modeling_llama import (
    LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel, LlamaRMSNorm, LlamaRotaryEmbedding)
from transformers.models.gemma3.modeling_gemma3 import (
    Gemma3DecoderLayer, Gemma3ForCausalLM, Gemma3PreTrainedModel, Gemma3RMSNorm, Gemma3RotaryEmbedding,
    Gemma3TextModel, Gemma3TextScaledWordEmbedding)
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3DecoderLayer

# relative: works in the package and in a checkpoint
from .configuration_gprune import GPruneGemma3Config, GPruneLlamaConfig


def _biased(linear: nn.Linear) -> nn.Linear:
    return nn.Linear(linear.in_features, linear.out_features, bias=True)


def build_decoder_layer(config, layer_idx: int) -> LlamaDecoderLayer | Qwen3DecoderLayer | Gemma3DecoderLayer:
    """The stock decoder layer of the family's kind (Qwen3's normalizes q and k per head), with
    this layer's sizes and the biases the config asks for."""
    if config.model_type == GPruneGemma3Config.model_type:  # not isinstance: remote code may load the config twice
        kind = Gemma3DecoderLayer
    else:
        kind = Qwen3DecoderLayer if config.qk_norm else LlamaDecoderLayer
    layer = kind(config.layer_config(layer_idx), layer_idx)
    attn, mlp = layer.self_attn, layer.mlp
    attn.config = config  # follow the model's attention implementation, not the per-layer copy's
    if getattr(config, "qkv_bias", False):
        attn.q_proj, attn.k_proj, attn.v_proj = _biased(attn.q_proj), _biased(attn.k_proj), _biased(attn.v_proj)
    if config.o_proj_bias:
        attn.o_proj = _biased(attn.o_proj)
    if config.down_proj_bias:
        mlp.down_proj = _biased(mlp.down_proj)
    return layer


class GPruneLlamaPreTrainedModel(LlamaPreTrainedModel):
    config_class = GPruneLlamaConfig
    # output_hidden_states hooks every layer of these kinds (Llama's own lists LlamaDecoderLayer only)
    _can_record_outputs = {"hidden_states": (LlamaDecoderLayer, Qwen3DecoderLayer),
                           "attentions": (LlamaAttention, Qwen3Attention)}


class GPruneLlamaModel(GPruneLlamaPreTrainedModel, LlamaModel):
    def __init__(self, config: GPruneLlamaConfig):
        GPruneLlamaPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([build_decoder_layer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()


class GPruneLlamaForCausalLM(GPruneLlamaPreTrainedModel, LlamaForCausalLM, GenerationMixin):
    def __init__(self, config: GPruneLlamaConfig):
        GPruneLlamaPreTrainedModel.__init__(self, config)
        self.model = GPruneLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


class GPruneGemma3PreTrainedModel(Gemma3PreTrainedModel):
    config_class = GPruneGemma3Config


class GPruneGemma3TextModel(GPruneGemma3PreTrainedModel, Gemma3TextModel):
    def __init__(self, config: GPruneGemma3Config):
        GPruneGemma3PreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = Gemma3TextScaledWordEmbedding(
            config.vocab_size, config.hidden_size, self.padding_idx, embed_scale=config.hidden_size**0.5)
        self.layers = nn.ModuleList([build_decoder_layer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = Gemma3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Gemma3RotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()


class GPruneGemma3ForCausalLM(GPruneGemma3PreTrainedModel, Gemma3ForCausalLM, GenerationMixin):
    def __init__(self, config: GPruneGemma3Config):
        GPruneGemma3PreTrainedModel.__init__(self, config)
        self.model = GPruneGemma3TextModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
