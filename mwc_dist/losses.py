"""Losses as pure functions of tensors. Their weights come from config, never from here.

``distillation_loss``: alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher || student), the KL
between temperature-softened distributions averaged over the label positions that are not padding
(labels == -100), as in Hinton et al. and distil-whisper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy over non-padded positions. logits [B, L, V], labels [B, L]."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


def kl_teacher_student(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, summed over the vocabulary, mean over non-padded positions."""
    mask = labels != IGNORE  # [B, L]
    s = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)  # [N, V]
    t = F.log_softmax(teacher_logits[mask].float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kl): total = alpha * ce + (1 - alpha) * temperature**2 * kl."""
    ce = cross_entropy(student_logits, labels)
    kl = kl_teacher_student(student_logits, teacher_logits.detach(), labels, temperature)
    return alpha * ce + (1 - alpha) * temperature**2 * kl, ce, kl
