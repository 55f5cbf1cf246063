"""Training-free reconstruction: after pruning, refit the kept output projections (o_proj over
the kept heads, down_proj over the kept neurons, each with a bias) by ridge least squares, so
the pruned model reproduces the dense model on the calibration text.

Layers are processed bottom-up on the pruned model's own hidden states, so a layer also
corrects what the layers below it changed: with target "residual" the attention is fitted so
that the residual stream after it matches the dense model's there, and the FFN so that the
layer's output matches the dense layer's. ("sublayer" fits each projection to the dense
projection's output instead, the classic layer-wise reconstruction.) Every calibration source
weighs the same whatever its token count. The ridge pulls towards the current (sliced,
bias-compensated) weights, not towards zero, so directions the calibration text barely
excites keep their trained weights. It generalises FLAP's bias compensation, the bias-only
solution of the same problem. Where a family normalizes each sublayer's output before the
residual add (Gemma 3), the target is always "sublayer"."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from edgecore.devices import model_device
from edgecore.families import family_of
from gprune.calibration import capture_layer_inputs


@dataclass
class Normal:
    """Normal equations of one projection on one calibration source: X'X and X'T summed over
    its tokens (X with a column of ones appended when the projection has a bias)."""
    gram: torch.Tensor  # [c(+1), c(+1)]
    cross: torch.Tensor  # [c(+1), hidden]
    bias: bool
    tokens: int = 0

    @classmethod
    def zeros(cls, proj: nn.Linear) -> "Normal":
        bias = proj.bias is not None
        c = proj.in_features + bias
        return cls(torch.zeros(c, c, dtype=torch.float64), torch.zeros(c, proj.out_features, dtype=torch.float64),
                   bias)

    def update(self, x: torch.Tensor, target: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double().cpu()
        if self.bias:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        self.gram += x.T @ x
        self.cross += x.T @ target.reshape(-1, target.shape[-1]).double().cpu()
        self.tokens += len(x)


def solve(proj: nn.Linear, normals: list[Normal], ridge: float) -> None:
    """Set `proj`'s weight (and bias, where it has one) to the ridge least-squares fit, each
    source weighted equally."""
    gram = sum(n.gram / n.tokens for n in normals)
    cross = sum(n.cross / n.tokens for n in normals)
    current = proj.weight.T if proj.bias is None else torch.cat([proj.weight.T, proj.bias[None]])
    lam = ridge * float(gram.diagonal()[:proj.in_features].mean())
    fit = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), cross + lam * current.double().cpu())
    proj.weight.copy_(fit[:proj.in_features].T.to(proj.weight))
    if proj.bias is not None:
        proj.bias.copy_(fit[-1].to(proj.bias))


@torch.no_grad()
def _run(layer, batches, hooks: dict | None = None) -> list[torch.Tensor]:
    """`layer`'s outputs on `batches` [(hidden, kwargs)], calling hooks {module: fn(batch, input,
    output)} on the way."""
    handles, current, outputs = [], [0], []
    for module, fn in (hooks or {}).items():
        handles.append(module.register_forward_hook(lambda m, a, out, fn=fn: fn(current[0], a[0], out)))
    try:
        for b, (hidden, kwargs) in enumerate(batches):
            current[0] = b
            out = layer(hidden, **kwargs)
            outputs.append(out[0] if isinstance(out, tuple) else out)
    finally:
        for h in handles:
            h.remove()
    return outputs


def _relative_error(pruned: list[torch.Tensor], dense: list[torch.Tensor]) -> float:
    num = sum(float((p - d).double().pow(2).sum()) for p, d in zip(pruned, dense))
    return num / sum(float(d.double().pow(2).sum()) for d in dense)


@torch.no_grad()
def reconstruct(dense, pruned, windows: dict[str, torch.Tensor], ridge: float = 1.0, target: str = "residual",
                batch_size: int = 8, device: torch.device | None = None) -> dict:
    """Refit `pruned`'s o_proj and down_proj weights (and biases, where they have them) in place on
    `windows`, token windows per calibration source; one decoder layer at a time sits on `device` (default: where `pruned` is).
    Returns diagnostics: per layer, the relative error of its output against the dense model's."""
    device = device or model_device(pruned)
    started = time.perf_counter()
    fam, dense_fam = family_of(pruned.config), family_of(dense.config)
    if fam.normalizes_sublayer_outputs:
        # A sublayer whose output is normalized (Gemma 3) adds a vector of fixed RMS to the residual
        # stream: it cannot absorb the error the layers below left there. Fitting it to (the residual
        # target mapped back through its norm) wrecked Gemma 3 270M at 35%: science perplexity 11x that
        # of sublayer targets. Each projection is fitted to the dense projection's output instead.
        target = "sublayer"
    d_in = {s: capture_layer_inputs(dense, ids, batch_size, device) for s, ids in windows.items()}
    p_in = {s: capture_layer_inputs(pruned, ids, batch_size, device) for s, ids in windows.items()}
    errors = []
    pairs = list(zip(dense_fam.decoder_layers(dense), fam.decoder_layers(pruned)))
    for d_layer, p_layer in tqdm(pairs, desc="reconstructing", unit="layer", leave=False):
        homes = [model_device(d_layer), model_device(p_layer)]
        d_layer.to(device), p_layer.to(device)
        o_proj, down_proj, ffn_norm = fam.o_proj(p_layer), fam.down_proj(p_layer), fam.ffn_norm(p_layer)
        # the dense layer: residual after attention, layer output and, for sublayer targets, the
        # o_proj and down_proj outputs
        d_mid, d_attn, d_down, d_out = {}, {}, {}, {}
        for s, batches in d_in.items():
            d_mid[s], d_attn[s], d_down[s] = [], [], []
            hooks = {dense_fam.ffn_norm(d_layer): lambda b, x, out, s=s: d_mid[s].append(x)}
            if target == "sublayer":
                hooks[dense_fam.o_proj(d_layer)] = lambda b, x, out, s=s: d_attn[s].append(out)
                hooks[dense_fam.down_proj(d_layer)] = lambda b, x, out, s=s: d_down[s].append(out)
            d_out[s] = _run(d_layer, batches, hooks)

        normals = []
        for s, batches in p_in.items():  # attention: o_proj on the kept heads' outputs
            n = Normal.zeros(o_proj)
            goal = ((lambda b: d_mid[s][b] - batches[b][0]) if target == "residual" else (lambda b: d_attn[s][b]))
            _run(p_layer, batches, {o_proj: lambda b, x, out: n.update(x, goal(b))})
            normals.append(n)
        solve(o_proj, normals, ridge)

        normals = []
        for s, batches in p_in.items():  # FFN: down_proj on the kept neurons, after the refitted attention
            n, p_mid = Normal.zeros(down_proj), []
            goal = ((lambda b: d_out[s][b] - p_mid[b]) if target == "residual" else (lambda b: d_down[s][b]))
            _run(p_layer, batches, {ffn_norm: lambda b, x, out: p_mid.append(x),
                                    down_proj: lambda b, x, out: n.update(x, goal(b))})
            normals.append(n)
        solve(down_proj, normals, ridge)

        for s, batches in p_in.items():
            p_in[s] = [(out, kwargs) for out, (_, kwargs) in zip(_run(p_layer, batches), batches)]
            d_in[s] = [(out, kwargs) for out, (_, kwargs) in zip(d_out[s], d_in[s])]
        errors.append(round(_relative_error([h for s in p_in for h, _ in p_in[s]],
                                            [h for s in d_in for h, _ in d_in[s]]), 6))
        d_layer.to(homes[0]), p_layer.to(homes[1])
    return {"output_error": errors, "target": target, "seconds": round(time.perf_counter() - started, 2),
            "tokens": int(sum(ids.numel() for ids in windows.values()))}
