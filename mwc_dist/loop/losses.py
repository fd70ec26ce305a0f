"""The training loss of one micro-batch: cross-entropy, or distillation against a frozen teacher (model.*)."""

from __future__ import annotations

import torch

from mwc_dist.loop.config import TrainConfig
from mwc_dist.losses import IGNORE, cross_entropy, distillation_loss, distillation_loss_stored
from mwc_dist.models.config import ModelConfig
from mwc_dist.models.label_head import install_label_head, label_rows


class TrainLoss:
    """(loss, ce, kl) of the prepared model on a batch; kl is None without a teacher.

    A frozen encoder (train.freeze_encoder) runs under no_grad, no activations kept; when it is also the
    teacher's encoder (``share_encoder``, see models/teacher.py) its output feeds both decoders and the
    teacher's encoder never runs. ``teacher_features``: the same audio in the teacher's longer window
    (audio.features.TrainFeatures), for a teacher that runs its own encoder.

    train.logits_at_labels_only: the student's and the teacher's vocabulary projection run only at the label
    positions that are not padding (models/label_head.py); the same loss, less work.
    """

    def __init__(self, m: ModelConfig, t: TrainConfig, accelerator, model, teacher, share_encoder: bool):
        self.model_cfg, self.accelerator, self.model, self.teacher = m, accelerator, model, teacher
        self.share_encoder, self.freeze_encoder = share_encoder, t.freeze_encoder
        self.unwrapped = accelerator.unwrap_model(model)
        self.labels_only = t.logits_at_labels_only and install_label_head(self.unwrapped)
        if self.labels_only and teacher is not None:
            install_label_head(teacher)  # a teacher whose head is not a plain Linear gives full logits: still fine

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
                inputs = {"encoder_outputs": self.unwrapped.get_encoder()(features)}
        if decoder_input_ids is None:
            decoder_input_ids = self._shift_right(labels)
        decoder = {"decoder_input_ids": decoder_input_ids}
        rows = labels != IGNORE if self.labels_only else None
        with label_rows(self.unwrapped, rows):
            logits = self.model(**inputs, **decoder).logits  # [N, V] at the label positions, or [B, L, V]
        m = self.model_cfg
        if self.teacher is None and stored_topk is not None:
            ids, logp = stored_topk
            return distillation_loss_stored(logits, ids, logp, labels, m.distillation_temperature, m.distillation_alpha)
        if self.teacher is None:
            ce = cross_entropy(logits, labels)
            return ce, ce, None
        own = {"input_features": features if teacher_features is None else teacher_features}
        with torch.no_grad(), self.accelerator.autocast(), label_rows(self.teacher, rows):
            teacher_logits = self.teacher(**(inputs if self.share_encoder else own), **decoder).logits
        return distillation_loss(logits, teacher_logits, labels, m.distillation_temperature, m.distillation_alpha)

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """The decoder input the model builds from labels on its own: start token, then the labels shifted right."""
        from transformers.models.whisper.modeling_whisper import shift_tokens_right

        config = self.unwrapped.config
        return shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
