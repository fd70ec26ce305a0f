"""train.logits_at_labels_only and train.fused_optimizer: each takes effect, and the loss stays what it was.

The label-rows head (models/label_head.py) projects onto the vocabulary only at label positions that are not padding;
the loss and every gradient must equal the full-logits computation (CE, online KD with a different teacher, and KD
from stored top-k), and the model's logits must have one row per label position, which is the work saved.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_run import trainer

from mwc_dist.config import ModelConfig, TrainConfig
from mwc_dist.losses import IGNORE
from mwc_dist.models.build import build_model


@pytest.fixture(scope="module")
def tiny():
    model = build_model(ModelConfig(base_model="tiny-random"), seed=3)[0].train()
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, model.config.num_mel_bins, 2 * model.config.max_source_positions, generator=g)
    labels = torch.randint(0, 1000, (3, 12), generator=g)
    labels[1, 7:], labels[2, 3:] = IGNORE, IGNORE  # 12 + 7 + 3 = 22 of 36 positions count
    return model, features, labels


def head_rows(model) -> list[tuple[int, ...]]:
    """The shapes the output projection returns, recorded by a forward hook."""
    shapes = []
    model.get_output_embeddings().register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    return shapes


def loss_and_grads(model, teacher, features, labels, labels_only: bool, stored=None, kd=False):
    from accelerate import Accelerator

    from mwc_dist.loop.losses import TrainLoss

    model, teacher = copy.deepcopy(model), copy.deepcopy(teacher)
    cfg = ModelConfig(use_distillation=kd, distillation_temperature=2.0, distillation_alpha=0.3)
    t = TrainConfig(logits_at_labels_only=labels_only)
    loss = TrainLoss(cfg, t, Accelerator(cpu=True), model, teacher, False)
    shapes = head_rows(model)
    total, ce, kl = loss(features, labels, stored_topk=stored)
    total.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    values = [float(x.detach()) for x in (total, ce, kl) if x is not None]
    return values, grads, shapes


@pytest.mark.parametrize("kind", ["ce", "kd", "stored_topk"])
def test_label_rows_give_the_full_logits_loss_and_gradients(tiny, kind):
    model, features, labels = tiny
    teacher = None
    stored = None
    if kind == "kd":
        teacher = build_model(ModelConfig(base_model="tiny-random"), seed=4)[0].eval().requires_grad_(False)
    if kind == "stored_topk":
        g = torch.Generator().manual_seed(1)
        ids = torch.stack([torch.randperm(model.config.vocab_size, generator=g)[:8] for _ in range(36)]).view(3, 12, 8)
        logp = torch.log_softmax(torch.randn(3, 12, 8, generator=g), -1) - 0.1  # a tail of e^-0.1 outside the top 8
        stored = (ids, logp)
    kd = kind != "ce"
    full, full_grads, full_shapes = loss_and_grads(model, teacher, features, labels, False, stored, kd)
    rows, rows_grads, rows_shapes = loss_and_grads(model, teacher, features, labels, True, stored, kd)
    assert full_shapes == [(3, 12, model.config.vocab_size)]
    assert rows_shapes == [(22, model.config.vocab_size)]  # only the label positions were projected
    assert rows == pytest.approx(full, rel=1e-6)
    if kind == "ce":  # the decoder input TrainLoss builds from the labels is the model's own (it shifts them itself)
        with torch.no_grad():
            assert full[0] == pytest.approx(float(model(input_features=features, labels=labels).loss), rel=1e-6)
    if kd:
        assert len(full) == 3 and full[2] > 1e-3  # a real KL: the teacher differs
    assert full_grads.keys() == rows_grads.keys() and len(full_grads) > 10
    for k in full_grads:
        torch.testing.assert_close(rows_grads[k], full_grads[k], rtol=1e-5, atol=1e-7, msg=k)


def test_the_head_is_only_changed_inside_the_context(tiny):
    """Generation and export see a plain projection: full logits outside ``label_rows``, same parameter, same keys."""
    from mwc_dist.models.label_head import install_label_head, label_rows

    model, features, labels = tiny
    model = copy.deepcopy(model).eval()
    keys = list(model.state_dict())
    ids = torch.tensor([[model.config.decoder_start_token_id, 5, 6]])
    with torch.no_grad():
        before = model(input_features=features[:1], decoder_input_ids=ids).logits
        assert install_label_head(model)
        after = model(input_features=features[:1], decoder_input_ids=ids).logits
        with label_rows(model, torch.tensor([[False, True, False]])):
            row = model(input_features=features[:1], decoder_input_ids=ids).logits
    assert list(model.state_dict()) == keys
    assert model.get_output_embeddings().weight is model.get_decoder().embed_tokens.weight  # still tied
    torch.testing.assert_close(after, before)
    assert row.shape == (1, model.config.vocab_size)
    torch.testing.assert_close(row[0], before[0, 1])


@pytest.mark.parametrize("on", [True, False])
def test_the_keys_take_effect_in_the_trainer(demo_shards, tmp_path, on):
    """In a real Trainer step: the head's output rows (label positions only, or the whole padded batch) and the
    optimizer's kernel (fused or not) follow the keys; the step's loss is the same either way."""
    flag = str(on).lower()
    t = trainer(
        demo_shards,
        tmp_path / "run",
        f"train.logits_at_labels_only={flag}",
        f"train.fused_optimizer={flag}",
        "train.max_steps=1",
        "train.per_device_train_batch_size=4",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=no",
    )
    from mwc_dist.data.stream import build_train_loader

    batch = next(b for b in build_train_loader(t.data.stream(0)) if b is not None)
    shapes = head_rows(t.accelerator.unwrap_model(t.model))
    features, _ = t.features(batch["audio"])
    labels = batch["labels"]
    loss, _, _ = t.compute_loss(features, labels, None, batch["decoder_input_ids"])
    real = int((labels != IGNORE).sum())
    assert real < labels.numel()  # the batch has padding, so the two differ
    vocab = t.accelerator.unwrap_model(t.model).config.vocab_size
    assert shapes == [(real, vocab) if on else (*labels.shape, vocab)]
    assert t.optimizer.optimizer.defaults["fused"] is (True if on else None)
    t.tracker.finish()
    reference = build_model(ModelConfig(base_model="tiny-random"), seed=42)[0].train()
    with torch.no_grad():
        expected = reference(input_features=features, decoder_input_ids=batch["decoder_input_ids"], labels=labels).loss
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
