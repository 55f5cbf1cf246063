"""How much the model's loss responds to a change of each sublayer's output, estimated from
gradients: GPrune's `gains="fisher"` (`"measured"` probes the output instead: gprune.output_probe).

GPrune measures the cost of removing units as the relative change of a sublayer's output,
||delta_t||^2 / ||r_t||^2 at each token (r: the residual stream there). Equal relative changes
do not cost the same everywhere: a change early in the model passes through every later layer.
To second order the loss grows by about 1/2 (g_t . delta_t)^2, g_t = dLoss/dr_t; for a change
in no particular direction that is ||delta_t||^2 ||g_t||^2 / (2d). So the gain of a sublayer,
mean_t ||r_t||^2 ||g_t||^2, turns its relative change into the loss it costs (the empirical
Fisher on the calibration text: one forward and backward pass per batch, no labels but the
text's own next tokens). Gains are normalised to mean 1 over all sublayers."""

from __future__ import annotations

import torch

from edgecore.families import family_of


def fisher_gains(model, ids: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    """[layers, 2] gains of the attention (column 0) and FFN (column 1) of every decoder layer."""
    family = family_of(model.config)
    layers = family.decoder_layers(model)
    device = next(model.parameters()).device
    sums = torch.zeros(len(layers), 2, dtype=torch.float64)
    tokens = 0
    for batch in ids.split(batch_size):
        outputs, residuals, handles = {}, {}, []
        for i, layer in enumerate(layers):
            # o_proj / down_proj outputs are what attention / the FFN add to the residual stream
            handles.append(family.o_proj(layer).register_forward_hook(
                lambda m, a, out, i=i: outputs.__setitem__((i, 0), out)))
            handles.append(family.down_proj(layer).register_forward_hook(
                lambda m, a, out, i=i: outputs.__setitem__((i, 1), out)))
            handles.append(family.post_attention_norm(layer).register_forward_pre_hook(
                lambda m, a, i=i: residuals.__setitem__((i, 0), a[0].detach())))
        try:
            with torch.enable_grad():
                batch = batch.to(device)
                logits = model(input_ids=batch, use_cache=False).logits[:, :-1]
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                         batch[:, 1:].reshape(-1), reduction="sum")
                keys = sorted(outputs)
                grads = torch.autograd.grad(loss, [outputs[k] for k in keys])
        finally:
            for h in handles:
                h.remove()
        for (i, part), g in zip(keys, grads):
            after_attention = residuals[(i, 0)]
            r = after_attention if part == 0 else after_attention + outputs[(i, 1)].detach()
            sums[i, part] += float((r.double().pow(2).sum(-1) * g.double().pow(2).sum(-1)).sum())
        tokens += batch.numel()
    gains = sums / tokens
    return gains / gains.mean()
