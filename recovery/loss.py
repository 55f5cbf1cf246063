"""The distillation loss and the held-out KL that reports what it achieved.

Neither materialises a batch's logits: the models run with `logits_to_keep=1`, the hidden states
entering the output layer are recorded (OutputLayerInput), and the logits, the KL and its gradients
are computed a chunk of tokens at a time (a batch of 8 x 256 tokens over SmolLM2's 49,152-token
vocabulary is 400 MB of float32 logits per tensor, and the plain loss kept several of them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgecore.devices import model_device
from edgecore.errors import GPruneError
from edgecore.families import family_of

CHUNK_ELEMENTS = 2 ** 23  # logits per chunk (32 MB in float32): tokens per chunk = this // vocabulary


class OutputLayerInput:
    """The hidden states a causal LM feeds its output layer, recorded by a hook on its final norm,
    with the output layer and the logit soft-cap (Gemma) to compute its logits from them."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under peft's LoRA
        self.head = base.get_output_embeddings()
        if getattr(self.head, "bias", None) is not None:
            raise GPruneError("distillation expects an output layer without a bias")
        self.softcap = getattr(base.config, "final_logit_softcapping", None)
        self.hidden = None
        self._handle = family_of(base.config).final_norm(base).register_forward_hook(self._keep)

    def _keep(self, module, args, output):
        self.hidden = output

    def take(self) -> torch.Tensor:
        """The last forward's hidden states as [tokens, hidden] (and forget them)."""
        hidden, self.hidden = self.hidden, None
        return hidden.reshape(-1, hidden.shape[-1])

    def remove(self) -> None:
        self._handle.remove()


def _logits(hidden: torch.Tensor, weight: torch.Tensor, softcap: float | None) -> torch.Tensor:
    z = (hidden @ weight.T).float()
    return softcap * torch.tanh(z / softcap) if softcap else z


def kl_sum(student: torch.Tensor, s_weight: torch.Tensor, teacher: torch.Tensor, t_weight: torch.Tensor,
           temperature: float = 1.0, softcap: float | None = None, grads: tuple[bool, bool] = (False, False)):
    """(sum over tokens of KL(teacher || student) on next-token distributions softened by `temperature`,
    its gradient for the student's hidden states, for its output weight): computed from the hidden states
    ([tokens, hidden]) and the output weights, one chunk of tokens at a time; a gradient not asked for
    (`grads`) is None."""
    total = torch.zeros((), dtype=torch.float32, device=student.device)
    grad_h = torch.zeros_like(student) if grads[0] else None
    grad_w = torch.zeros(s_weight.shape, dtype=torch.float32, device=s_weight.device) if grads[1] else None
    rows = max(1, CHUNK_ELEMENTS // s_weight.shape[0])
    s_weight, t_weight = s_weight.to(student.dtype), t_weight.to(teacher.dtype)  # once, not per chunk
    for start in range(0, len(student), rows):
        h = student[start:start + rows]
        z = _logits(h, s_weight, softcap)
        log_q = F.log_softmax(z / temperature, dim=-1)
        log_p = F.log_softmax(_logits(teacher[start:start + rows], t_weight, softcap).div_(temperature), dim=-1)
        total += F.kl_div(log_q, log_p, log_target=True, reduction="sum")
        if grad_h is None and grad_w is None:
            continue
        g = (log_q.exp_() - log_p.exp_()).div_(temperature)  # d KL / d logits
        if softcap:
            g *= 1 - (z / softcap) ** 2
        g = g.to(h.dtype)
        if grad_h is not None:
            grad_h[start:start + rows] = g @ s_weight
        if grad_w is not None:
            grad_w += (g.T @ h).float()
    return total, grad_h, grad_w


class _ChunkedKD(torch.autograd.Function):
    """temperature^2 * mean KL over tokens; its gradients are computed in the forward pass, chunk by chunk
    (the logits are gone by backward), and scaled by the incoming gradient in backward."""

    @staticmethod
    def forward(ctx, student, s_weight, teacher, t_weight, temperature, softcap):
        total, grad_h, grad_w = kl_sum(student, s_weight, teacher, t_weight, temperature, softcap,
                                       grads=(ctx.needs_input_grad[0], ctx.needs_input_grad[1]))
        scale = temperature ** 2 / len(student)
        ctx.grad_h = grad_h.mul_(scale) if grad_h is not None else None
        ctx.grad_w = grad_w.mul_(scale).to(s_weight.dtype) if grad_w is not None else None
        return total * scale

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w, ctx.grad_h, ctx.grad_w = ctx.grad_h, ctx.grad_w, None, None
        if grad_h is not None:
            grad_h.mul_(grad)
        if grad_w is not None:
            grad_w.mul_(grad)
        return grad_h, grad_w, None, None, None, None


def kd_loss(student: OutputLayerInput, teacher: OutputLayerInput, temperature: float = 1.0,
            hidden_weight: float = 0.0, student_layers=None, teacher_layers=None) -> torch.Tensor:
    """temperature^2 * mean over tokens of KL(teacher || student) on softened next-token distributions,
    from the hidden states both models fed their output layers in their last forward; plus, with
    hidden_weight, that times the mean over decoder layers of the student/teacher layer-output MSE,
    each divided by the teacher's mean square there (`*_layers`: the models' hidden_states outputs)."""
    t_hidden = teacher.take().to(student.hidden.device)
    loss = _ChunkedKD.apply(student.take(), student.head.weight, t_hidden, teacher.head.weight.to(t_hidden.device),
                            temperature, student.softcap)
    if hidden_weight > 0:
        pairs = list(zip(student_layers[1:], teacher_layers[1:]))
        mse = sum(F.mse_loss(hs.float(), ht.float()) / ht.float().pow(2).mean().clamp_min(1e-8) for hs, ht in pairs)
        loss = loss + hidden_weight * mse / len(pairs)
    return loss


@torch.no_grad()
def heldout_kl(student, teacher, windows: torch.Tensor, batch_size: int = 4) -> float:
    """Mean per-token KL(teacher || student) at temperature 1 on `windows` [n, seq_len]."""
    s_out, t_out = OutputLayerInput(student), OutputLayerInput(teacher)
    total, count = 0.0, 0
    was_training = student.training
    student.eval()
    try:
        for batch in windows.split(batch_size):
            student(input_ids=batch.to(model_device(student)), use_cache=False, logits_to_keep=1)
            teacher(input_ids=batch.to(model_device(teacher)), use_cache=False, logits_to_keep=1)
            s, t = s_out.take(), t_out.take().to(s_out.head.weight.device)
            kl, _, _ = kl_sum(s, s_out.head.weight, t, t_out.head.weight.to(s.device), softcap=s_out.softcap)
            total, count = total + float(kl), count + len(s)
    finally:
        s_out.remove(), t_out.remove()
        student.train(was_training)
    return total / count
