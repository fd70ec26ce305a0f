"""checkpoint.* and the validation loss by their effects, on real (tiny) training runs in one process.

- load_best_model_at_end with the seed's kind of cadence (evaluate every few steps, save only every few epochs):
  final/ holds the weights of the best evaluation, which no checkpoint caught.
- metrics["loss"] is the teacher-forced cross-entropy of that model on the validation split (recomputed here).
- save_strategy=epoch with save_steps=N saves at the end of every N-th epoch (and the end of the run).
"""

import json

import pytest
import torch
from tiny_run import trainer

from mwc_dist.final import param_digest


def _digest_every_step(t) -> dict[int, str]:
    """Wraps train_step: the weight digest after each optimizer step, by step."""
    digests, real = {}, t.train_step

    def train_step(batch):
        real(batch)
        if t.accelerator.sync_gradients:
            digests[t.state.step + 1] = param_digest(t.accelerator.unwrap_model(t.model))

    t.train_step = train_step
    return digests


def test_best_evaluated_weights_survive_a_sparse_save_cadence(tmp_path, demo_shards):
    from transformers import WhisperForConditionalGeneration

    out = tmp_path / "run"
    t = trainer(
        demo_shards,
        out,
        "train.per_device_train_batch_size=4",
        "train.learning_rate=2e-3",
        "train.max_steps=8",
        "train.eval_steps=2",
        "train.eval_max_samples=8",
        "train.generation_max_length=8",
        "checkpoint.save_strategy=epoch",
        "checkpoint.save_steps=5",  # never within these 8 steps (one epoch is 11 steps)
        "checkpoint.load_best_model_at_end=true",
        # the highest validation loss is "best": certainly not the last evaluation, so final/ != last weights
        "checkpoint.metric_for_best_model=loss",
        "checkpoint.greater_is_better=true",
    )
    digests = _digest_every_step(t)
    t.train()
    losses = {s: json.loads((out / "eval" / f"step-{s}" / "metrics.json").read_text())["loss"] for s in (2, 4, 6, 8)}
    best_step = max(losses, key=losses.get)
    assert best_step != 8 and losses[best_step] > losses[8]
    assert json.loads((out / "best" / "best.json").read_text()) == {
        "step": best_step,
        "metric": "loss",
        "value": losses[best_step],
    }
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-8"]  # only the end-of-run one
    final = WhisperForConditionalGeneration.from_pretrained(out / "final")
    assert param_digest(final) == digests[best_step] != digests[8]


def test_validation_loss_is_the_cross_entropy_of_the_labels(tmp_path, demo_shards):
    from transformers import WhisperForConditionalGeneration

    from mwc_dist.audio.features import LogMel
    from mwc_dist.data.stream import Tokenize, eval_batches

    out = tmp_path / "run"
    t = trainer(demo_shards, out, "train.max_steps=2", "train.eval_steps=2", "train.generation_max_length=8")
    t.train()
    reported = json.loads((out / "eval" / "step-2" / "metrics.json").read_text())["loss"]
    model = WhisperForConditionalGeneration.from_pretrained(out / "final").eval()
    fe, tok = t.processor.feature_extractor, t.processor.tokenizer
    log_mel = LogMel(fe.feature_size, fe.chunk_length)
    total, tokens = 0.0, 0
    tokenize = Tokenize(tok, "es", "transcribe", model.config.max_target_positions)
    for batch in eval_batches(
        t.periodic_eval.shards, tokenize, batch_size=3, rank=0, world_size=1, max_samples=fe.n_samples
    ):
        with torch.no_grad():
            logits = model(input_features=log_mel(batch["audio"]), labels=batch["labels"]).logits
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"], reduction="sum")
        total, tokens = total + float(ce), tokens + int((batch["labels"] != -100).sum())
    assert tokens > 0 and reported == pytest.approx(total / tokens, rel=1e-4)


def test_save_strategy_epoch_saves_every_nth_epoch_end(tmp_path, demo_shards, capsys):
    out = tmp_path / "run"
    t = trainer(
        demo_shards,
        out,
        "train.per_device_train_batch_size=8",
        "train.num_epochs=3",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=epoch",
        "checkpoint.save_steps=2",
        "checkpoint.keep_last=10",
    )
    n = t.data.steps_in_epoch(0)
    assert n == t.data.steps_in_epoch(1) == t.data.steps_in_epoch(2)
    t.train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{2 * n}", f"checkpoint-{3 * n}"]
    states = [json.loads((out / f"checkpoint-{s}" / "trainer_state.json").read_text()) for s in (2 * n, 3 * n)]
    assert [(s["step"], s["epoch"], s["epoch_step"]) for s in states] == [(2 * n, 2, 0), (3 * n, 3, 0)]
    # the samples each epoch leaves out (here: what no full batch of 8 holds) are counted, not silent
    left_out = t.data.shards.num_samples - n * 8
    logged = capsys.readouterr().out
    assert left_out > 0 and f"epoch 2: {n} steps; {left_out} samples left out to keep the ranks in step" in logged
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["samples_left_out_per_epoch"] == {"0": left_out, "1": left_out, "2": left_out}
