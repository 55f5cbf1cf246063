"""The chunked distillation loss (logits a chunk of tokens at a time, never the whole batch's) equals the
plain one on whole logits, in value and in every parameter's gradient: tied and untied output layers,
temperature, Gemma's logit soft-cap; the held-out KL too."""

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_model

import recovery.loss as loss
from recovery.loss import OutputLayerInput, heldout_kl, kd_loss


def plain_kd(student_logits, teacher_logits, temperature):
    t = F.log_softmax(teacher_logits.float() / temperature, -1)
    s = F.log_softmax(student_logits.float() / temperature, -1)
    return F.kl_div(s, t, log_target=True, reduction="none").sum(-1).mean() * temperature ** 2


@pytest.mark.parametrize("family,tie,temperature,softcap", [("llama", True, 1.0, None), ("llama", False, 2.0, None),
                                                            ("qwen3", True, 1.0, None), ("gemma3", True, 1.5, 3.0)])
def test_chunked_equals_plain(monkeypatch, family, tie, temperature, softcap):
    student, teacher = tiny_model(family, seed=1, tie=tie), tiny_model(family, seed=2, tie=tie)
    if softcap:
        student.config.final_logit_softcapping = teacher.config.final_logit_softcapping = softcap
    monkeypatch.setattr(loss, "CHUNK_ELEMENTS", 7 * student.config.vocab_size)  # 7 tokens a chunk: 9 chunks
    ids = torch.randint(3, 100, (3, 20))
    plain = plain_kd(student(ids).logits, teacher(ids).logits.detach(), temperature)
    plain.backward()
    expected = {n: p.grad.clone() for n, p in student.named_parameters()}
    student.zero_grad()

    s_out, t_out = OutputLayerInput(student), OutputLayerInput(teacher)
    with torch.no_grad():
        teacher(ids, logits_to_keep=1)
    student(ids, logits_to_keep=1)
    chunked = kd_loss(s_out, t_out, temperature)
    chunked.backward()
    assert abs(float(chunked) - float(plain)) < 1e-6 * max(1.0, float(plain))
    for name, p in student.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-7, rtol=1e-4), name
    s_out.remove(), t_out.remove()

    with torch.no_grad():
        plain_t1 = float(plain_kd(student(ids).logits, teacher(ids).logits, 1.0))
    assert abs(heldout_kl(student, teacher, ids, batch_size=2) - plain_t1) < 1e-6 * max(1.0, plain_t1)
