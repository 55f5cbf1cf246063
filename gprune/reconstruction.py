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

import torch
from torch import nn
from tqdm.auto import tqdm

from edgecore import distributed
from edgecore.devices import model_device
from edgecore.families import family_of
from edgecore.model_layers import capture_layer_inputs


def least_squares(proj: nn.Linear, tokens: int):
    """The accumulator of `proj`'s ridge least-squares problem over `tokens` calibration tokens (all
    processes together): its normal equations (`Normal`, inputs x inputs), or the tokens themselves
    (`Samples`, tokens x tokens) when they are fewer than the projection's inputs. Both give the same
    fit; for an 8B model's down_proj on 768 tokens one holds 1.6 GB and factors a 14,336-wide matrix,
    the other 90 MB and a 768-wide one."""
    return Samples(proj) if tokens < proj.in_features + (proj.bias is not None) else Normal(proj)


class Normal:
    """The fit as a correction D to `proj`'s current weights W (and bias), by its normal equations:
    (X'X + lam I) D = X'R, R = T - X W the residual of the targets T, every source's tokens weighted by
    1 / its token count so that every source weighs the same (X with a column of ones appended when the
    projection has a bias). The ridge pulls the fit towards W, not towards zero. One accumulator, updated
    in place on the compute device."""

    def __init__(self, proj: nn.Linear):
        self.bias, device = proj.bias is not None, proj.weight.device
        c = proj.in_features + self.bias
        self.gram = torch.zeros(c, c, dtype=torch.float64, device=device)
        self.cross = torch.zeros(c, proj.out_features, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor, residual: torch.Tensor, weight: float) -> None:
        x = _rows(x, self.bias)
        self.gram.addmm_(x.T, x, alpha=weight)
        self.cross.addmm_(x.T, residual.reshape(-1, residual.shape[-1]).to(self.gram), alpha=weight)

    def solve(self, proj: nn.Linear, ridge: float) -> None:
        """Add the fitted correction to `proj` (the accumulator is consumed: the ridge goes into it in place)."""
        gram = distributed.all_reduce_sum(self.gram)  # under torchrun each process summed its share
        cross = distributed.all_reduce_sum(self.cross)
        gram.diagonal().add_(ridge * float(gram.diagonal()[:proj.in_features].mean()))
        _add_correction(proj, [spd_solve_(gram, cross).T])


class Samples:
    """The same fit in its dual form, for fewer tokens than inputs: D = Y'(YY' + lam I)^-1 S, Y and S the
    tokens' inputs and residuals each scaled by the square root of its weight, kept until the solve."""

    def __init__(self, proj: nn.Linear):
        self.bias = proj.bias is not None
        self.x, self.residual = [], []

    def update(self, x: torch.Tensor, residual: torch.Tensor, weight: float) -> None:
        self.x.append(_rows(x, self.bias) * weight ** 0.5)
        self.residual.append(residual.reshape(-1, residual.shape[-1]).to(torch.float64) * weight ** 0.5)

    def solve(self, proj: nn.Linear, ridge: float) -> None:
        """Add the fitted correction to `proj`."""
        y = distributed.all_gather_rows(torch.cat(self.x))  # under torchrun each process kept its share
        s = distributed.all_gather_rows(torch.cat(self.residual))
        self.x = self.residual = None
        kernel = y @ y.T
        kernel.diagonal().add_(ridge * float(y[:, :proj.in_features].pow(2).sum(0).mean()))  # X'X's mean diagonal
        z = torch.cholesky_solve(s, torch.linalg.cholesky(kernel))
        # D' = z'y a block of output rows at a time: whole, in float64, it is 470 MB for an 8B down_proj
        _add_correction(proj, (z[:, r:r + 1024].T @ y for r in range(0, z.shape[1], 1024)))


def _rows(x: torch.Tensor, bias: bool) -> torch.Tensor:
    """A projection's input as token rows in float64, with a column of ones when it has a bias."""
    x = x.reshape(-1, x.shape[-1]).to(torch.float64)
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1) if bias else x


def _add_correction(proj: nn.Linear, blocks) -> None:
    """Add the correction D' ([outputs, inputs(+1)] float64, given as blocks of rows in order) to `proj`'s
    weight and its last column to the bias, across precisions in place."""
    start, n = 0, proj.in_features
    for block in blocks:
        rows = slice(start, start + len(block))
        proj.weight[rows].add_(block[:, :n])
        if proj.bias is not None:
            proj.bias[rows].add_(block[:, n])
        start += len(block)


@torch.no_grad()
def spd_solve_(a: torch.Tensor, b: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """x with a x = b for a symmetric positive definite `a`, by a blocked Cholesky factorization in place:
    `a` becomes its factor and `b` the solution. No copy of `a` is made (torch.linalg.solve makes one: another
    1.6 GB in float64 for an 8B model's down_proj), only block-wide panels."""
    n = a.shape[0]
    for k in range(0, n, block):  # a = L L', L in the lower triangle
        e = min(k + block, n)
        a[k:e, k:e] = torch.linalg.cholesky(a[k:e, k:e])
        if e < n:
            a[e:, k:e] = torch.linalg.solve_triangular(a[k:e, k:e].T, a[e:, k:e], upper=True, left=False)
            a[e:, e:].addmm_(a[e:, k:e], a[e:, k:e].T, alpha=-1)
    for k in range(0, n, block):  # L y = b
        e = min(k + block, n)
        if k:
            b[k:e].addmm_(a[k:e, :k], b[:k], alpha=-1)
        b[k:e] = torch.linalg.solve_triangular(a[k:e, k:e], b[k:e], upper=False)
    for k in reversed(range(0, n, block)):  # L' x = y
        e = min(k + block, n)
        if e < n:
            b[k:e].addmm_(a[e:, k:e].T, b[e:], alpha=-1)
        b[k:e] = torch.linalg.solve_triangular(a[k:e, k:e].T, b[k:e], upper=True)
    return b


@torch.no_grad()
def _run(i: int, layer, batches, hooks: dict | None = None) -> list[torch.Tensor]:
    """Layer i's outputs on `batches` [(hidden, kwargs of every layer)], calling hooks {module: fn(batch,
    input, output)} on the way."""
    handles, current, outputs = [], [0], []
    for module, fn in (hooks or {}).items():
        handles.append(module.register_forward_hook(lambda m, a, out, fn=fn: fn(current[0], a[0], out)))
    try:
        for b, (hidden, kwargs) in enumerate(batches):
            current[0] = b
            out = layer(hidden, **kwargs[i])
            outputs.append(out[0] if isinstance(out, tuple) else out)
    finally:
        for h in handles:
            h.remove()
    return outputs


def _relative_error(pruned: list[torch.Tensor], dense: list[torch.Tensor]) -> float:
    num = sum(float((p - d).double().pow(2).sum()) for p, d in zip(pruned, dense))
    sums = distributed.all_reduce_sum(torch.tensor([num, sum(float(d.double().pow(2).sum()) for d in dense)],
                                                   dtype=torch.float64))
    return float(sums[0] / sums[1])


class Reconstruction:
    """Reconstruction as a pass over the layers, one (dense, pruned) pair at a time, bottom-up: `start`
    captures the inputs of the first layer, `fit` refits one pruned layer in place and carries both
    models' hidden states to the next layer."""

    def __init__(self, windows: dict[str, torch.Tensor], ridge: float = 1.0, target: str = "residual",
                 batch_size: int = 8):
        self.windows, self.ridge, self.target, self.batch_size = windows, ridge, target, batch_size
        self.tokens = int(sum(ids.numel() for ids in windows.values()))  # over all processes
        self.errors: list[float] = []

    def start(self, dense, device: torch.device) -> None:
        """`dense`: the dense model, in memory or `ModelLayers`."""
        self.started = time.perf_counter()
        if family_of(dense.config).normalizes_sublayer_outputs:
            # A sublayer whose output is normalized (Gemma 3) adds a vector of fixed RMS to the residual
            # stream: it cannot absorb the error the layers below left there. Fitting it to (the residual
            # target mapped back through its norm) wrecked Gemma 3 270M at 35%: science perplexity 11x that
            # of sublayer targets. Each projection is fitted to the dense projection's output instead.
            self.target = "sublayer"
        self.d_in = {s: capture_layer_inputs(dense, distributed.share(ids), self.batch_size, device)
                     for s, ids in self.windows.items()}
        self.p_in = dict(self.d_in)  # the embeddings are not pruned: both models enter layer 0 alike
        self.layer = 0  # the index of the next layer to fit

    @torch.no_grad()
    def dense_pass(self, fam, d_layer) -> dict:
        """Run the dense layer: what its pruned counterpart is fitted to (the residual after attention, the
        layer's output and, for sublayer targets, the o_proj and down_proj outputs). The dense layer is
        not needed after this, so its memory can go before the fit."""
        d_mid, d_attn, d_down, d_out = {}, {}, {}, {}
        for s, batches in self.d_in.items():
            d_mid[s], d_attn[s], d_down[s] = [], [], []
            hooks = {fam.ffn_norm(d_layer): lambda b, x, out, s=s: d_mid[s].append(x)}
            if self.target == "sublayer":
                hooks[fam.o_proj(d_layer)] = lambda b, x, out, s=s: d_attn[s].append(out)
                hooks[fam.down_proj(d_layer)] = lambda b, x, out, s=s: d_down[s].append(out)
            d_out[s] = _run(self.layer, d_layer, batches, hooks)
        return {"mid": d_mid, "attn": d_attn, "down": d_down, "out": d_out}

    @torch.no_grad()
    def fit(self, fam, p_layer, dense: dict) -> None:
        """Refit `p_layer`'s o_proj and down_proj on the pruned model's own hidden states, towards `dense`
        (`dense_pass` of the same layer); `fam`: the family."""
        target, p_in = self.target, self.p_in
        d_mid, d_attn, d_down, d_out = dense["mid"], dense["attn"], dense["down"], dense["out"]
        o_proj, down_proj, ffn_norm = fam.o_proj(p_layer), fam.down_proj(p_layer), fam.ffn_norm(p_layer)

        fit = least_squares(o_proj, self.tokens)
        for s, batches in p_in.items():  # attention: o_proj on the kept heads' outputs
            goal = ((lambda b: d_mid[s][b] - batches[b][0]) if target == "residual" else (lambda b: d_attn[s][b]))
            weight = 1 / self.windows[s].numel()
            _run(self.layer, p_layer, batches, {o_proj: lambda b, x, out: fit.update(x, goal(b) - out, weight)})
        fit.solve(o_proj, self.ridge)

        fit = least_squares(down_proj, self.tokens)
        for s, batches in p_in.items():  # FFN: down_proj on the kept neurons, after the refitted attention
            p_mid, weight = [], 1 / self.windows[s].numel()
            goal = ((lambda b: d_out[s][b] - p_mid[b]) if target == "residual" else (lambda b: d_down[s][b]))
            _run(self.layer, p_layer, batches, {ffn_norm: lambda b, x, out: p_mid.append(x),
                                    down_proj: lambda b, x, out: fit.update(x, goal(b) - out, weight)})
        fit.solve(down_proj, self.ridge)
        fit = None  # what the solve kept (normal equations: 1.6 GB for an 8B down_proj) goes before the last pass

        for s, batches in p_in.items():
            p_in[s] = [(out, kwargs) for out, (_, kwargs) in zip(_run(self.layer, p_layer, batches), batches)]
            self.d_in[s] = [(out, kwargs) for out, (_, kwargs) in zip(d_out[s], self.d_in[s])]
        self.errors.append(round(_relative_error([h for s in p_in for h, _ in p_in[s]],
                                                 [h for s in self.d_in for h, _ in self.d_in[s]]), 6))
        self.layer += 1

    def diagnostics(self) -> dict:
        """Per layer, the relative error of its output against the dense model's."""
        return {"output_error": self.errors, "target": self.target,
                "seconds": round(time.perf_counter() - self.started, 2),
                "tokens": self.tokens}


@torch.no_grad()
def reconstruct(dense, pruned, windows: dict[str, torch.Tensor], ridge: float = 1.0, target: str = "residual",
                batch_size: int = 8, device: torch.device | None = None) -> dict:
    """Refit `pruned`'s o_proj and down_proj weights (and biases, where they have them) in place on
    `windows`, token windows per calibration source; one decoder layer at a time sits on `device`
    (default: where `pruned` is). Returns `Reconstruction.diagnostics`."""
    device = device or model_device(pruned)
    fam = family_of(pruned.config)
    run = Reconstruction(windows, ridge, target, batch_size)
    run.start(dense, device)
    pairs = list(zip(family_of(dense.config).decoder_layers(dense), fam.decoder_layers(pruned)))
    for d_layer, p_layer in tqdm(pairs, desc="reconstructing", unit="layer", leave=False):
        homes = [model_device(d_layer), model_device(p_layer)]
        d_layer.to(device), p_layer.to(device)
        run.fit(fam, p_layer, run.dense_pass(fam, d_layer))
        d_layer.to(homes[0]), p_layer.to(homes[1])
    return run.diagnostics()
