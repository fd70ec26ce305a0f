"""The training loop: shards -> log-mel on device -> Whisper -> AdamW, on Accelerate (DDP or DeepSpeed).

    accelerate launch -m mwc_dist.train --config run.yaml [section.key=value ...]
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m mwc_dist.train --config run.yaml
    mwc train --config run.yaml            # one process

Rank 0 writes everything (metrics.jsonl, checkpoints, evaluations, final/); collective calls (eval,
checkpoint save) run on all ranks. The run ends by checking that every rank holds the same weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mwc_dist.audio.augment import build_augment
from mwc_dist.audio.features import LogMel, TrainFeatures
from mwc_dist.config import Config, config_to_yaml, load_config
from mwc_dist.data.plan import TrainData
from mwc_dist.data.stream import Tokenize, build_train_loader
from mwc_dist.dist import build_accelerator, describe_precision, launch_rank, print0, say_refusal, seed_everything
from mwc_dist.final import check_export_window, end_of_run, run_summary
from mwc_dist.loop.evaluate import PeriodicEval, load_eval_shards
from mwc_dist.loop.log import StepLog
from mwc_dist.loop.losses import TrainLoss
from mwc_dist.loop.preemption import Preemption
from mwc_dist.loop.step import BadSteps, OptimizerStep, TrainingDiverged, build_optimizer
from mwc_dist.models.build import build_model, prepare_for_training, window_seconds
from mwc_dist.models.config import ModelConfig
from mwc_dist.models.teacher import build_teacher
from mwc_dist.resume.checkpoint import BEST_DIR
from mwc_dist.resume.policy import Checkpointer
from mwc_dist.tracking import build_tracker

PREEMPTED_EXIT = 124  # "stopped early, resumable"; the job is already requeued when SLURM asked
DIVERGED_EXIT = 3  # train.max_bad_steps skipped steps in a row
BAD_INPUT_EXIT = 2  # a config or data problem, refused with a message that says what to change

__all__ = ["Trainer", "TrainingDiverged", "run", "main", "PREEMPTED_EXIT", "DIVERGED_EXIT", "BAD_INPUT_EXIT"]


def check_combination(model_cfg: ModelConfig, accelerator) -> None:
    """Refuse, before any work, the engine x method combinations that do not work (docs/TRAINING_MATRIX.md)."""
    plugin = accelerator.state.deepspeed_plugin
    stage = plugin.zero_stage if plugin is not None else None
    if stage == 3 and (model_cfg.use_lora or model_cfg.use_4bit_quantization):
        kind = "QLoRA" if model_cfg.use_4bit_quantization else "LoRA"
        raise ValueError(
            f"{kind} under DeepSpeed ZeRO-3 is not supported: ZeRO-3 partitions the frozen base weights "
            f"(bitsandbytes' 4-bit weights cannot be partitioned, and saving the adapter deadlocks). "
            f"Use accelerate_configs/zero2.yaml or plain DDP: only the small adapter trains anyway."
        )


class Trainer:
    """setup() wires the parts together, each from its own config section; train() runs the loop to its end."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.out_dir = Path(cfg.train.output_dir)

    def setup(self) -> None:
        cfg, out_dir = self.cfg, self.out_dir
        self.accelerator = accelerator = build_accelerator(cfg.train, cfg.tracking.report_to)
        self.is_main = accelerator.is_main_process
        self.precision = describe_precision(accelerator)
        self.device = accelerator.device
        check_combination(cfg.model, accelerator)
        seed_everything(cfg.train.seed)  # same seed on every rank before the model is built
        model = self._build_models()
        self.data = TrainData(
            cfg.data,
            cfg.train,
            Tokenize(self.processor.tokenizer, cfg.model.language, cfg.model.task, model.config.max_target_positions),
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            max_samples=self.processor.feature_extractor.n_samples,
            augment=build_augment(cfg.augment, cfg.train.seed, window_seconds(model.config)),
        )
        eval_shards = load_eval_shards(cfg.data, cfg.train.eval_steps, accelerator)
        self.periodic_eval = PeriodicEval(cfg.train, eval_shards, out_dir, cfg.model.language, cfg.model.task)
        teacher_window = window_seconds(self.teacher.config) if self.teacher is not None else None
        self.data.check_windows(model=window_seconds(model.config), teacher=teacher_window)
        check_export_window(cfg.export, window_seconds(model.config))
        self.total_steps = self.data.total_steps()
        optimizer, self.scheduler = build_optimizer(cfg.train, model, self.total_steps)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.loss = TrainLoss(cfg.model, cfg.train, accelerator, self.model, self.teacher, self.share_encoder)
        self.stepper = OptimizerStep(accelerator, self.model, self.optimizer, self.scheduler, cfg.train.max_grad_norm)
        self.checkpointer = Checkpointer(cfg.checkpoint, out_dir, config_to_yaml(cfg), accelerator)
        self.state = self.checkpointer.resume(self.scheduler)  # collective
        if self.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.yaml").write_text(f"# effective precision: {self.precision}\n{config_to_yaml(cfg)}")
        self.tracker = build_tracker(accelerator, out_dir, cfg.tracking, cfg.to_dict())
        self.bad_steps = BadSteps(cfg.train.max_bad_steps, out_dir, accelerator, self.tracker)
        self.log = StepLog(
            accelerator,
            self.tracker,
            self.stepper,
            log_every_steps=cfg.train.log_every_steps,
            max_tokens=model.config.max_target_positions,
            distilling=cfg.model.use_distillation,
        )
        self.preemption = Preemption(cfg.train.requeue_on_preemption)
        self.skipped = None  # why the last optimizer step was skipped (loop/step.py SkipReason), None: it updated
        print0(
            accelerator, f"world size {accelerator.num_processes}; precision {self.precision}; {self.data.describe()}"
        )

    def _build_models(self):
        """The model to train (frozen parts, checkpointing), its processor, the teacher, the features they see."""
        cfg, t = self.cfg, self.cfg.train
        model, self.processor = build_model(
            cfg.model, seed=t.seed, device=self.device, gradient_checkpointing=t.gradient_checkpointing
        )
        self.base_dir = model.mwc_base_dir
        prepare_for_training(model, t, quantized=cfg.model.use_4bit_quantization)
        self.teacher, self.share_encoder = build_teacher(
            cfg.model,
            model,
            freeze_encoder=t.freeze_encoder,
            seed=t.seed,
            device=self.device,
            log=lambda msg: print0(self.accelerator, msg),
        )
        fe = self.processor.feature_extractor
        teacher_window = window_seconds(self.teacher.config) if self.teacher is not None else None
        own_window = not self.share_encoder and teacher_window not in (None, window_seconds(model.config))
        self.features = TrainFeatures(
            LogMel(fe.feature_size, fe.chunk_length),
            LogMel(fe.feature_size, teacher_window) if own_window else None,  # a teacher with a longer window
            spec_augment=t.spec_augment,
        ).to(self.device)
        return model

    def train(self) -> dict:
        """Optimizer steps to the end (or to a preemption); resumes mid-epoch at this rank's data position."""
        state, accelerator = self.state, self.accelerator
        self.model.train()
        rank = accelerator.process_index
        state.start(rank, accelerator.num_processes, log=lambda msg: print0(accelerator, msg))  # the data cursor
        progress = progress_bar(self.total_steps, state.step, self.is_main)
        while state.step < self.total_steps:
            steps = self.data.start_epoch(state.epoch, log=lambda msg: print0(accelerator, msg))
            for batch in build_train_loader(self.data.stream(state.epoch, skip_items=state.position(rank))):
                state.take_item(rank)
                if batch is None:  # padding that keeps the workers' round robin regular
                    continue
                with accelerator.accumulate(self.model):
                    self.train_step(batch)
                if not accelerator.sync_gradients:
                    continue
                epoch_done = state.finish_step(rank, steps)
                progress.update(1)
                self.bad_steps.count(state, self.skipped)
                self.log.maybe_log(state)  # collective when due
                self.maybe_evaluate(epoch_done)  # collective when due
                if self.checkpointer.due(state, epoch_done):
                    self.save()
                if self.preemption.requested(accelerator):  # collective
                    progress.close()
                    return self.checkpoint_and_requeue()
                if epoch_done or state.step >= self.total_steps:
                    break
        progress.close()
        return self.finish()

    def train_step(self, batch: dict) -> None:
        """One micro-batch; at the accumulation boundary one optimizer step, or a skipped one (self.skipped: why)."""
        features, teacher_features = self.features(batch["audio"].to(self.device))
        labels, decoder_input_ids = batch["labels"].to(self.device), batch["decoder_input_ids"].to(self.device)
        stored = batch.get("teacher_topk")  # model.distillation_source=shards: the teacher's top-k, from the shards
        stored = tuple(x.to(self.device) for x in stored) if stored is not None else None
        loss, ce, kl = self.compute_loss(features, labels, teacher_features, decoder_input_ids, stored)
        loss_ok = self.stepper.backward(loss)  # collective: every rank skips the same steps
        if self.accelerator.sync_gradients:
            self.skipped = self.stepper.step()
        self.optimizer.zero_grad(set_to_none=True)
        if loss_ok:
            self.log.add(batch, loss, ce, kl)

    def compute_loss(self, features, labels, teacher_features=None, decoder_input_ids=None, stored_topk=None):
        """(loss, ce, kl) of one micro-batch (loop/losses.py)."""
        return self.loss(features, labels, teacher_features, decoder_input_ids, stored_topk)

    def maybe_evaluate(self, epoch_done: bool, force: bool = False) -> dict | None:
        """Collective when due (train.eval_steps) or forced."""
        if not (force or self.periodic_eval.due(self.state.step, epoch_done)):
            return None
        metrics = self.periodic_eval.run(self.accelerator, self.model, self.processor, self.tracker, self.state)
        if metrics is not None:
            self.checkpointer.keep_best(self.model, self.processor, self.state, metrics)  # collective when better
        return metrics

    def save(self, force: bool = False) -> None:
        """Collective: a checkpoint of this step (checkpoint.*)."""
        self.checkpointer.save(self.model, self.processor, self.scheduler, self.state, force=force)

    def checkpoint_and_requeue(self) -> dict:
        """Collective: save at this step boundary; under SLURM rank 0 requeues the job (it resumes from here)."""
        state = self.state
        if not self.checkpointer.exists(state.step):
            self.save(force=True)
        self.log.maybe_log(state, force=True)
        requeued = False
        if self.is_main:
            requeued = self.preemption.requeue(state.step)
        self.tracker.finish()
        self.accelerator.wait_for_everyone()
        return {"preempted": True, "steps": state.step, "requeued": requeued}

    def finish(self) -> dict:
        """Collective: last log, eval and checkpoint; a cross-rank weight check; rank 0 writes final/ and exports."""
        state = self.state
        self.log.maybe_log(state, force=True)
        if state.last_eval.get("step") != state.step:
            self.maybe_evaluate(False, force=True)
        if not self.checkpointer.exists(state.step):
            self.save(force=True)
        summary = run_summary(self.accelerator, self.model, state, self.precision)  # collective
        summary |= self.data.summary(state)
        state_dict = self.accelerator.get_state_dict(self.model)  # collective under ZeRO-3
        if self.is_main:
            best = self.cfg.checkpoint.load_best_model_at_end and state.best_step is not None
            end_of_run(
                self.out_dir,
                self.accelerator.unwrap_model(self.model),
                state_dict,
                self.processor,
                summary,
                best_model=self.out_dir / BEST_DIR if best else None,
                base_dir=self.base_dir,
                model_cfg=self.cfg.model,
                export_cfg=self.cfg.export,
                shard_dir=self.cfg.data.shard_dir,
                eval_split=self.cfg.data.eval_split if self.periodic_eval.shards is not None else None,
            )
        self.tracker.finish()
        self.accelerator.wait_for_everyone()
        if not summary["ranks_identical"]:
            raise RuntimeError(f"ranks ended with different weights: {summary['param_digests']}")
        return summary


def progress_bar(total: int, initial: int, is_main: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not is_main, dynamic_ncols=True)


def run(cfg: Config) -> int:
    """Train one run to its end; the exit status both entry points return (mwc train, python -m mwc_dist.train).

    0 done; 2 bad config or data (refused before or during setup); 3 diverged (train.max_bad_steps);
    124 preempted: checkpoint written (and the SLURM job requeued when it runs under SLURM).
    """
    trainer = Trainer(cfg)
    try:
        trainer.setup()
    except ValueError as exc:  # ConfigError, SourceError and the setup checks are ValueErrors with the fix in them
        say_refusal(str(exc))  # once, by rank 0, after a launcher's own report
        return BAD_INPUT_EXIT
    try:
        result = trainer.train()
    except TrainingDiverged as exc:
        trainer.tracker.finish()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return DIVERGED_EXIT
    # a preempted run exits non-zero so a plain wrapper notices; under SLURM the requeue has already happened
    return PREEMPTED_EXIT if result.get("preempted") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mwc_dist.train", description="Train Whisper on shards (run under accelerate launch for many processes)."
    )
    parser.add_argument("--config", help="YAML config (native keys or the seed's training_config.yaml)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 data.shard_dir=shards/demo"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ValueError as exc:
        say_refusal(str(exc))
        return BAD_INPUT_EXIT
    for note in cfg.notes if launch_rank() == 0 else ():
        print(f"note: {note}", file=sys.stderr)
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
