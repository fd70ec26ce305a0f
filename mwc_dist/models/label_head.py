"""Whisper's output projection computed only at the label positions that count (train.logits_at_labels_only).

The projection onto the 51,865-token vocabulary (``proj_out``, tied to the token embeddings) and the softmax over
it are the decoder's largest cost per token. A padded batch computes them at every position, padding included,
and the loss then throws the padding rows away. Inside ``label_rows(model, mask)`` the head projects only the
rows where ``mask`` is true: the model's ``logits`` come back as ``[N, V]``, one row per label position, in the
order ``logits[mask]`` would give, so the loss (losses.py) is the same to float rounding and so are the gradients;
the padding rows are never computed, forward or backward, for the student and for a teacher alike.

Outside the context the head is an ordinary ``nn.Linear`` (generation, evaluation and export see no change), and
its weight stays the tied parameter it was, so checkpoints and DDP/DeepSpeed see the same module tree.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class LabelRowsHead(nn.Linear):
    """``proj_out`` that, while ``rows`` is set (a bool mask [B, L]), projects ``hidden[rows]`` -> [N, V]."""

    rows: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return super().forward(hidden)
        return F.linear(hidden[self.rows], self.weight, self.bias)


def install_label_head(model) -> bool:
    """Make the model's output projection a ``LabelRowsHead`` in place (same parameters, same tying); False where
    the head is not a plain ``nn.Linear`` (then the full logits are computed, as before)."""
    head = model.get_output_embeddings()
    if type(head) is LabelRowsHead:
        return True
    if type(head) is not nn.Linear:
        return False
    head.__class__ = LabelRowsHead  # a subclass with no new parameters or buffers: the module is otherwise untouched
    return True


@contextmanager
def label_rows(model, rows: torch.Tensor | None):
    """Within: the model's logits are ``[N, V]`` at ``rows`` (None: the full ``[B, L, V]``)."""
    head = model.get_output_embeddings()
    if rows is None or type(head) is not LabelRowsHead:
        yield False
        return
    head.rows = rows
    try:
        yield True
    finally:
        head.rows = None
