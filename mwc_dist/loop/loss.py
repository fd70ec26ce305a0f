"""The training loss of one micro-batch: cross-entropy, or distillation against a frozen teacher (model.*)."""

from __future__ import annotations

import torch

from mwc_dist.config import ModelConfig
from mwc_dist.losses import distillation_loss, distillation_loss_stored


class TrainLoss:
    """(loss, ce, kl) of the prepared model on a batch; kl is None without a teacher.

    A frozen encoder (train.freeze_encoder) runs under no_grad, no activations kept; when it is also the
    teacher's encoder (``share_encoder``, see models/teacher.py) its output feeds both decoders and the
    teacher's encoder never runs. ``teacher_features``: the same audio in the teacher's longer window
    (audio.features.TrainFeatures), for a teacher that runs its own encoder.
    """

    def __init__(self, m: ModelConfig, freeze_encoder: bool, accelerator, model, teacher, share_encoder: bool):
        self.m, self.accelerator, self.model, self.teacher = m, accelerator, model, teacher
        self.share_encoder, self.freeze_encoder = share_encoder, freeze_encoder

    def __call__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        teacher_features: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        stored_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """``decoder_input_ids`` (data/labels.py; a prompt before the labels): the student and the teacher read the
        same decoder input; None: the labels shifted right (the model's own rule). ``stored_topk`` (ids, log-probs):
        the teacher's distribution read from the shards (model.distillation_source=shards), no teacher run."""
        inputs = {"input_features": features}
        if self.freeze_encoder:  # the unwrapped encoder is outside the prepared model's autocast: add it
            with torch.no_grad(), self.accelerator.autocast():
                inputs = {"encoder_outputs": self.accelerator.unwrap_model(self.model).get_encoder()(features)}
        decoder = {"labels": labels} | ({} if decoder_input_ids is None else {"decoder_input_ids": decoder_input_ids})
        out = self.model(**inputs, **decoder)
        m = self.m
        if self.teacher is None and stored_topk is not None:
            ids, logp = stored_topk
            return distillation_loss_stored(
                out.logits, ids, logp, labels, m.distillation_temperature, m.distillation_alpha
            )
        if self.teacher is None:
            return out.loss, out.loss, None
        with torch.no_grad(), self.accelerator.autocast():
            own = {"input_features": features if teacher_features is None else teacher_features}
            teacher_logits = self.teacher(**(inputs if self.share_encoder else own), **decoder).logits
        return distillation_loss(out.logits, teacher_logits, labels, m.distillation_temperature, m.distillation_alpha)
