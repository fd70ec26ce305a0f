"""The frozen teacher of knowledge distillation, and whether it can share the student's encoder."""

from __future__ import annotations

import torch

from mwc_dist.models.build import build_model, window_seconds
from mwc_dist.models.config import ModelConfig


def build_teacher(model_cfg: ModelConfig, student, *, freeze_encoder: bool, seed: int, device, log=print):
    """(teacher, share_encoder): a frozen teacher in eval mode, or (None, False) without distillation.

    ``share_encoder``: the student's frozen encoder is the teacher's, so its output feeds both decoders and the
    teacher's encoder never runs. A student with a shorter window holds the teacher's encoder with the position
    embeddings cut to its window; it shares only when ``model.distillation_teacher_window`` is "student".
    """
    if not model_cfg.use_distillation or model_cfg.distillation_source == "shards":  # offline: no teacher in memory
        return None, False
    teacher, _ = build_model(ModelConfig(base_model=model_cfg.teacher_model), seed=seed)
    teacher.requires_grad_(False).eval().to(device)
    s_vocab, t_vocab = student.config.vocab_size, teacher.config.vocab_size
    if s_vocab != t_vocab:
        raise ValueError(
            f"model.teacher_model {model_cfg.teacher_model!r} has a vocabulary of {t_vocab} tokens but the "
            f"student has {s_vocab}: distillation needs the same tokenizer"
        )
    same_window = window_seconds(student.config) == window_seconds(teacher.config)
    share = (
        freeze_encoder
        and (same_window or model_cfg.distillation_teacher_window == "student")
        and _same_encoder(student.get_encoder(), teacher.get_encoder())
    )
    if model_cfg.distillation_teacher_window == "student" and not share:
        log(
            "model.distillation_teacher_window=student: the student's encoder is not its teacher's "
            "(mwc make-student) or train.freeze_encoder is false, so the teacher runs its own encoder"
        )
    return teacher, share


def _same_encoder(student, teacher) -> bool:
    """The same weights, the student's position embeddings being the first rows of the teacher's."""
    sa, sb = student.state_dict(), teacher.state_dict()
    if sa.keys() != sb.keys():
        return False
    for k, a in sa.items():
        b = sb[k].cpu()
        if k == "embed_positions.weight":
            b = b[: a.shape[0]]
        if a.shape != b.shape or not torch.equal(a.cpu(), b):
            return False
    return True
