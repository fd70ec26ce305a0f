"""Losses as pure functions of tensors. Their weights come from config, never from here.

``distillation_loss``: alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher || student), the KL
between temperature-softened distributions averaged over the label positions that are not padding
(labels == -100), as in Hinton et al. and distil-whisper.

``kl_stored_topk``: the same KL from a teacher's stored top-k log-probabilities (offline distillation, `mwc
pseudo-label --store-topk K`), over the k tokens plus the rest of the vocabulary as one bucket (exact when k is the
vocabulary; at T=1 within ~5 % of the full KL at k=64 for whisper-base, tests/training/test_offline_kd.py).

Logits come either as the model's ``[B, L, V]`` or already at the label positions, ``[N, V]`` with N the count of
``labels != -100`` in row-major order (train.logits_at_labels_only, models/label_head.py); both give the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def at_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The rows of ``logits`` at the non-padded label positions, [N, V] (selected already when 2-D)."""
    return logits if logits.dim() == 2 else logits[labels != IGNORE]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy over non-padded positions. logits [B, L, V] or [N, V], labels [B, L]."""
    return F.cross_entropy(at_labels(logits, labels).float(), labels[labels != IGNORE])


def kl_teacher_student(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, summed over the vocabulary, mean over non-padded positions."""
    s = F.log_softmax(at_labels(student_logits, labels).float() / temperature, dim=-1)  # [N, V]
    t = F.log_softmax(at_labels(teacher_logits, labels).float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kl): total = alpha * ce + (1 - alpha) * temperature**2 * kl."""
    ce = cross_entropy(student_logits, labels)
    kl = kl_teacher_student(student_logits, teacher_logits.detach(), labels, temperature)
    return alpha * ce + (1 - alpha) * temperature**2 * kl, ce, kl


def kl_stored_topk(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logp: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """KL(teacher || student) from the teacher's top-k (ids [B, L, k], log-probabilities at T=1 [B, L, k]) at each
    label position, mean over non-padded positions.

    Over k + 1 outcomes: the k stored tokens and the rest of the vocabulary as one bucket, whose teacher mass is
    1 - sum(top-k). At T=1 that is exact for the bucket (a lower bound of the full KL, tight when the teacher's tail
    is small); at another temperature the tail's tempered mass is estimated as if spread evenly over its tokens.
    Exact for any temperature when k is the vocabulary (the bucket is empty)."""
    mask = labels != IGNORE
    vocab = student_logits.shape[-1]
    lp = topk_logp[mask].float()  # [N, k]
    rest = vocab - lp.shape[-1]
    s_all = F.log_softmax(at_labels(student_logits, labels).float() / temperature, dim=-1)
    s_top = s_all.gather(-1, topk_ids[mask])
    if rest == 0:
        t = F.log_softmax(lp / temperature, dim=-1)
        return (t.exp() * (t - s_top)).sum(-1).mean()
    log_tail = torch.log1p(-lp.exp().sum(-1).clamp(max=1 - 1e-6))  # the teacher's mass outside its top-k (T=1)
    n = torch.log(torch.tensor(float(rest)))
    t = F.log_softmax(torch.cat([lp / temperature, (n + (log_tail - n) / temperature)[:, None]], -1), dim=-1)
    s_tail = torch.log1p(-s_top.exp().sum(-1).clamp(max=1 - 1e-6))
    s = torch.cat([s_top, s_tail[:, None]], -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def distillation_loss_stored(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logp: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kl) as ``distillation_loss``, the KL from the stored top-k."""
    ce = cross_entropy(student_logits, labels)
    kl = kl_stored_topk(student_logits, topk_ids, topk_logp, labels, temperature)
    return alpha * ce + (1 - alpha) * temperature**2 * kl, ce, kl
