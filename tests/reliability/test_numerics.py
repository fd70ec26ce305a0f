"""A NaN loss or non-finite gradients skip the optimizer step (counted, logged); K in a row stop the run."""

import json

import pytest
import torch
from faults import InfGrad
from tiny_run import trainer


def _trainer(tmp_path, demo_shards, *extra):
    settings = ("train.eval_steps=-1", "train.learning_rate=1e-3", "checkpoint.save_strategy=steps")
    return trainer(demo_shards, tmp_path / "run", *settings, "checkpoint.save_steps=2", *extra)


def _inject(trainer, bad: dict[int, str]):
    """Make the micro-batches of the given (1-based) optimizer steps bad: 'nan' loss or 'inf' gradients."""
    real = trainer.compute_loss

    def compute_loss(features, labels, teacher_features=None, decoder_input_ids=None, stored_topk=None):
        loss, ce, kl = real(features, labels, teacher_features, decoder_input_ids, stored_topk)
        kind = bad.get(trainer.state.step + 1)
        if kind == "nan":
            loss = loss * float("nan")
        elif kind == "inf":
            loss = InfGrad.apply(loss)
        return loss, ce, kl

    trainer.compute_loss = compute_loss


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}


def test_bad_steps_are_skipped_counted_and_logged(tmp_path, demo_shards):
    trainer = _trainer(tmp_path, demo_shards, "train.max_steps=6", "train.gradient_accumulation_steps=2")
    _inject(trainer, {3: "nan", 5: "inf"})
    before = {}
    real_step = trainer.train_step

    def train_step(batch):  # snapshot the weights before each bad optimizer step's micro-batches
        if trainer.state.step + 1 in (3, 5) and trainer.state.step + 1 not in before:
            before[trainer.state.step + 1] = _weights(trainer)
        real_step(batch)
        if trainer.accelerator.sync_gradients and trainer.state.step + 1 in (3, 5):
            after = _weights(trainer)
            assert all(torch.equal(after[k], v) for k, v in before[trainer.state.step + 1].items())  # no update

    trainer.train_step = train_step
    summary = trainer.train()
    assert summary["steps"] == 6 and trainer.state.skipped_steps == 2 and trainer.state.bad_streak == 0
    assert all(torch.isfinite(v).all() for v in _weights(trainer).values() if v.is_floating_point())
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r for r in rows if "loss" in r}
    assert 3 not in losses  # both micro-batches of step 3 had a NaN loss: nothing to average
    assert losses[2]["skipped_steps"] == 0 and losses[4]["skipped_steps"] == 1 and losses[6]["skipped_steps"] == 2
    assert [(r["step"], r["bad_streak"]) for r in rows if "bad_streak" in r] == [(3, 1), (5, 1)]
    assert all(r["loss"] == r["loss"] for r in losses.values())  # the NaN never reaches the logged loss (NaN != NaN)
    assert trainer.scheduler.last_epoch == 4  # the schedule advanced only on the 4 real updates


def test_k_bad_steps_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, demo_shards):
    from mwc_dist.resume.checkpoint import list_checkpoints
    from mwc_dist.train import TrainingDiverged

    trainer = _trainer(tmp_path, demo_shards, "train.max_steps=12", "train.max_bad_steps=3")
    _inject(trainer, {5: "nan", 6: "inf", 7: "nan", 8: "nan"})
    with pytest.raises(TrainingDiverged, match=r"3 optimizer steps in a row were skipped .*checkpoint-4"):
        trainer.train()
    assert trainer.state.step == 7 and trainer.state.skipped_steps == 3
    good = list_checkpoints(tmp_path / "run")
    assert [p.name for p in good] == ["checkpoint-2", "checkpoint-4"]  # nothing saved from the bad streak
    state = json.loads((good[-1] / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["skipped_steps"] == 0


def test_nan_on_one_rank_skips_the_step_on_both(demo_shards, tmp_path):
    """Only rank 1 sees NaN losses (steps 3-4): both ranks skip the same steps and end with identical weights."""
    from test_crashes import _launch_2proc

    out = tmp_path / "run"
    proc = _launch_2proc(demo_shards, out, "nan-on-rank:1:3,4", "train.max_steps=6")
    log = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, log[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6 and summary["ranks_identical"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["bad_streak"]) for r in rows if "bad_streak" in r] == [(3, 1), (4, 2)]
    assert "step 4: skipped (non-finite loss); 2 in a row, 2 in all" in log
    assert "checkpoint postponed" in log  # step 4's checkpoint waits for a good step
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-6"]
