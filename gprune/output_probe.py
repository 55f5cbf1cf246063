"""How far the model's next-token distribution moves when one sublayer loses units: the KL
divergence from the dense model's, on a few calibration windows, and on the same tokens the
layer-local change as GPrune's measured cost defines it (||change of the sublayer's output||^2
over ||residual stream after the sublayer||^2 per token).
GPrune's measured gains (methods/gprune_llm.py) are their ratio: what a unit of layer-local
cost costs at the output. Both are measured on the same tokens, so the ratio depends less on
how strongly these particular windows use the removed units (it still varies with the text:
BENCHMARKS.md, issue 14).

A removal is simulated, not performed: a pre-hook holds the removed input channels of the
sublayer's output projection at a constant (their mean with bias compensation, else 0),
which is exactly what pruning them does. One dense pass keeps every layer's input, so a
probe runs only the layers from the probed one on. `kl` prices a whole allocation the same
way (several sublayers held at once), for GPrune's width search. The whole model sits on one
device."""

from __future__ import annotations

import torch

from edgecore.families import family_of
from gprune.calibration import capture_layer_inputs


def _output(layer_output):
    return layer_output[0] if isinstance(layer_output, tuple) else layer_output


class OutputProbe:
    def __init__(self, model, ids: torch.Tensor, batch_size: int = 4):
        self.family = family = family_of(model.config)
        self.layers = family.decoder_layers(model)
        self.norm, self.head = family.final_norm(model), model.get_output_embeddings()
        self.tokens = ids.numel()
        # per batch: the dense hidden states (input of every layer, then the last one's output),
        # the layers' keyword arguments, the dense log-probabilities
        self.batches = []
        with torch.no_grad():
            for hidden, kwargs in capture_layer_inputs(model, ids, batch_size, next(model.parameters()).device):
                states = [hidden]
                for layer in self.layers:
                    states.append(_output(layer(states[-1], **kwargs)))
                self.batches.append((states, kwargs, self._log_probs(states[-1])))

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(hidden)).float().log_softmax(-1)

    def _projection(self, layer: int, part: str):
        block = self.layers[layer]
        return self.family.o_proj(block) if part == "attention" else self.family.down_proj(block)

    def _hold(self, layer: int, part: str, channels: torch.Tensor, values: torch.Tensor, change: list | None = None):
        """Hook holding input `channels` of `part`'s output projection at `values`; it appends the
        squared norm of the projection's output change per token to `change` when given."""
        def hold(module, args):
            x = args[0].clone()
            x[..., channels.to(x.device)] = values.to(x)
            if change is not None:
                change.append(torch.nn.functional.linear(x - args[0], module.weight).float().pow(2).sum(-1))
            return (x, *args[1:])
        return self._projection(layer, part).register_forward_pre_hook(hold)

    def _batch_kl(self, start: int, states, kwargs, dense) -> float:
        """Summed KL(dense || hooked) over one batch's tokens, layers run from `start` on."""
        hidden = states[start]
        for b in self.layers[start:]:
            hidden = _output(b(hidden, **kwargs))
        return float((dense.exp() * (dense - self._log_probs(hidden))).sum())

    @torch.no_grad()
    def kl(self, holds: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Mean KL(dense || held) per token when, for every (layer, part) in `holds`, the input
        channels of its output projection are held at the given values: a whole allocation at once."""
        holds = {key: held for key, held in holds.items() if len(held[0])}
        if not holds:
            return 0.0
        handles = [self._hold(layer, part, *held) for (layer, part), held in holds.items()]
        start = min(layer for layer, _ in holds)
        try:
            return sum(self._batch_kl(start, states, kwargs, dense) for states, kwargs, dense in self.batches) / self.tokens
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def measure(self, layer: int, part: str, channels: torch.Tensor, values: torch.Tensor) -> tuple[float, float]:
        """(mean KL(dense || probed), mean relative change) per token when input `channels` of the
        output projection of decoder layer `layer`'s `part` ("attention" or "ffn") are held at `values`."""
        change, residual = [], []
        handles = [self._hold(layer, part, channels, values, change)]
        if part == "attention":  # the post-attention norm's input is the residual stream after attention
            handles.append(self.family.post_attention_norm(self.layers[layer]).register_forward_pre_hook(
                lambda module, args: residual.append(args[0].float().pow(2).sum(-1))))
        kl = relative = 0.0
        try:
            for states, kwargs, dense in self.batches:
                kl += self._batch_kl(layer, states, kwargs, dense)
                scale = residual.pop() if residual else states[layer + 1].float().pow(2).sum(-1)
                relative += float((change.pop() / scale.clamp(min=1e-12)).sum())
        finally:
            for handle in handles:
                handle.remove()
        return kl / self.tokens, relative / self.tokens
