"""The distillation loss and the held-out KL that reports what it achieved."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgecore.devices import model_device


def kd_loss(student_out, teacher_out, temperature: float = 1.0, hidden_weight: float = 0.0) -> torch.Tensor:
    """temperature^2 * mean over tokens of KL(teacher || student) on softened next-token
    distributions, plus hidden_weight * the mean over decoder layers of the student/teacher
    layer-output MSE, each divided by the teacher's mean square there."""
    t = F.log_softmax(teacher_out.logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_out.logits.float() / temperature, dim=-1)
    loss = F.kl_div(s, t, log_target=True, reduction="none").sum(-1).mean() * temperature ** 2
    if hidden_weight > 0:
        pairs = list(zip(student_out.hidden_states[1:], teacher_out.hidden_states[1:]))
        mse = sum(F.mse_loss(hs.float(), ht.float()) / ht.float().pow(2).mean().clamp_min(1e-8) for hs, ht in pairs)
        loss = loss + hidden_weight * mse / len(pairs)
    return loss


@torch.no_grad()
def heldout_kl(student, teacher, windows: torch.Tensor, batch_size: int = 4) -> float:
    """Mean per-token KL(teacher || student) at temperature 1 on `windows` [n, seq_len]."""
    total, count = 0.0, 0
    was_training = student.training
    student.eval()
    for batch in windows.split(batch_size):
        s = student(input_ids=batch.to(model_device(student)), use_cache=False).logits.float()
        t = teacher(input_ids=batch.to(model_device(teacher)), use_cache=False).logits.float().to(s.device)
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="none").sum(-1)
        total, count = total + float(kl.sum()), count + kl.numel()
    student.train(was_training)
    return total / count
