"""Offline distillation: the teacher's top-k log-probabilities per label token, stored in the shards.

`mwc pseudo-label --store-topk K` runs the teacher once more over its own pseudo-label, teacher-forced, and stores
for every label position the K likeliest tokens and their log-probabilities (T=1) beside the sample::

    <key>.topk_ids.npy    int32   [label tokens, K]
    <key>.topk_logp.npy   float16 [label tokens, K]

Training with ``model.distillation_source: shards`` reads them (``collate`` -> ``batch["teacher_topk"]``) and
computes the KL term from them (losses.kl_stored_topk): no teacher in memory, no teacher forward per step. The
label sequence is the one training builds from ``teacher_text`` (data/labels.py, no timestamps, no prompt), so the
rows line up with the labels one to one; a sample whose rows do not is refused with what to do.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

IDS, LOGP = "topk_ids.npy", "topk_logp.npy"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@torch.no_grad()
def teacher_topk(model, features: torch.Tensor, sequences: dict[str, Any], k: int) -> list[dict[str, bytes]]:
    """Per sample of the batch, the tar members holding the teacher's top-k at each of its label positions."""
    labels = sequences["labels"]
    logits = model(input_features=features, decoder_input_ids=sequences["decoder_input_ids"]).logits
    logp, ids = torch.log_softmax(logits.float(), dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
    out = []
    for i in range(len(labels)):
        n = int((labels[i] != -100).sum())
        out.append({IDS: _npy(ids[i, :n].numpy().astype(np.int32)), LOGP: _npy(logp[i, :n].numpy().astype(np.float16))})
    return out


def stored_topk(samples: list[dict[str, Any]], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(ids [B, L, k], log-probs [B, L, k]) aligned with ``labels``; None when the samples carry none."""
    if not all(IDS in s for s in samples):
        if any(IDS in s for s in samples):
            raise ValueError("some samples of a batch carry stored top-k and some do not: label every shard again")
        return None
    rows = [(np.load(io.BytesIO(s[IDS])), np.load(io.BytesIO(s[LOGP]))) for s in samples]
    k = rows[0][0].shape[1]
    ids = torch.zeros(*labels.shape, k, dtype=torch.long)
    logp = torch.zeros(*labels.shape, k, dtype=torch.float32)
    for i, (sample, (row_ids, row_logp)) in enumerate(zip(samples, rows)):
        n = int((labels[i] != -100).sum())
        if n and len(row_ids) != n:
            raise ValueError(
                f"sample {sample['__key__']}: {len(row_ids)} stored top-k rows for {n} label tokens; the shards were "
                f"labelled with another tokenizer or language: run `mwc pseudo-label --store-topk` again"
            )
        ids[i, :n], logp[i, :n] = torch.from_numpy(row_ids[:n].astype(np.int64)), torch.from_numpy(row_logp[:n])
    return ids, logp.float()
