"""The training loop: shards -> log-mel on device -> Whisper -> AdamW, on Accelerate (DDP or DeepSpeed).

    accelerate launch -m mwc_dist.train --config run.yaml [section.key=value ...]
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m mwc_dist.train --config run.yaml
    mwc train --config run.yaml            # one process

Rank 0 writes everything (metrics.jsonl, checkpoints, evaluations, final/); collective calls (eval,
checkpoint save) run on all ranks. The run ends by checking that every rank holds the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mwc_dist.audio.features import LogMel, SpecAugment
from mwc_dist.checkpoint import TrainState, list_checkpoints, load_checkpoint, resolve_resume, save_checkpoint
from mwc_dist.config import Config, ModelConfig, config_to_yaml, load_config
from mwc_dist.data.stream import ShardSet, Tokenize, TrainStream, build_train_loader, load_shard_set
from mwc_dist.dist import build_accelerator, describe_precision, print0, seed_everything
from mwc_dist.evaluate import evaluate
from mwc_dist.final import export_final, weights_digest, write_final
from mwc_dist.losses import distillation_loss
from mwc_dist.models.build import build_model, window_seconds
from mwc_dist.models.teacher import build_teacher
from mwc_dist.tracking import build_tracker


def apply_freezing(model, freeze_encoder: bool, freeze_embeddings: bool) -> None:
    """get_encoder()/get_decoder() reach through a PEFT wrapper too (LoRA on a frozen encoder stays frozen)."""
    if freeze_encoder:
        model.get_encoder().requires_grad_(False)
    if freeze_embeddings:
        model.get_decoder().embed_tokens.requires_grad_(False)
        model.get_decoder().embed_positions.requires_grad_(False)


PREEMPTED_EXIT = 124  # "stopped early, resumable"; the job is already requeued when SLURM asked
DIVERGED_EXIT = 3  # train.max_bad_steps skipped steps in a row
BAD_INPUT_EXIT = 2  # a config or data problem, refused with a message that says what to change


class TrainingDiverged(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradients."""


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


@dataclass
class SinceLastLog:
    """What this rank's micro-batches added up to since the last log (reduced over ranks when logged)."""

    loss: float = 0.0
    ce: float = 0.0
    kl: float = 0.0
    micro: int = 0
    samples: int = 0
    seconds: float = 0.0
    over: int = 0  # samples whose label is longer than the decoder holds (no loss from them)
    start: float = field(default_factory=time.perf_counter)


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.out_dir = Path(cfg.train.output_dir)

    # ----------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg = self.cfg
        self.accelerator = build_accelerator(cfg.train, cfg.tracking.report_to)
        self.is_main = self.accelerator.is_main_process
        self.engine_steps_in_backward = self.accelerator.state.deepspeed_plugin is not None
        self.precision = describe_precision(self.accelerator)
        self.device = self.accelerator.device
        check_combination(cfg.model, self.accelerator)
        seed_everything(cfg.train.seed)  # same seed on every rank before the model is built
        model, self.processor = build_model(
            cfg.model, seed=cfg.train.seed, device=self.device, gradient_checkpointing=cfg.train.gradient_checkpointing
        )
        self.base_dir = model.mwc_base_dir
        apply_freezing(model, cfg.train.freeze_encoder, cfg.train.freeze_embeddings)
        if cfg.train.gradient_checkpointing and not cfg.model.use_4bit_quantization:  # QLoRA prepares its own
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.teacher, self.share_encoder = build_teacher(
            cfg.model, model, freeze_encoder=cfg.train.freeze_encoder, seed=cfg.train.seed, device=self.device
        )
        if self.teacher is not None and cfg.model.distillation_teacher_window == "student" and not self.share_encoder:
            print0(
                self.accelerator,
                "model.distillation_teacher_window=student: the student's encoder is not its teacher's "
                "(mwc make-student) or train.freeze_encoder is false, so the teacher runs its own encoder",
            )
        fe = self.processor.feature_extractor
        self.log_mel = LogMel(fe.feature_size, fe.chunk_length).to(self.device)
        self.teacher_log_mel = None  # for a teacher with a longer window than the student's that runs its own encoder
        if (
            self.teacher is not None
            and not self.share_encoder
            and window_seconds(self.teacher.config) != window_seconds(model.config)
        ):
            self.teacher_log_mel = LogMel(fe.feature_size, window_seconds(self.teacher.config)).to(self.device)
        self.spec_augment = SpecAugment().to(self.device) if cfg.train.spec_augment else None
        self.tokenize = Tokenize(
            self.processor.tokenizer, cfg.model.language, cfg.model.task, max_tokens=model.config.max_target_positions
        )
        self.train_shards = load_shard_set(cfg.data, "train")
        self.eval_shards = self._eval_shards()
        self._check_window(model)

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
        self.total_steps = self._plan_total_steps()
        from transformers import get_scheduler

        # stepped by us once per optimizer step (accelerate's prepared scheduler would step world_size times)
        self.scheduler = get_scheduler(
            cfg.train.lr_scheduler_type,
            optimizer,
            num_warmup_steps=cfg.train.warmup_steps,
            num_training_steps=self.total_steps,
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

        self.state = TrainState(world_size=self.accelerator.num_processes)
        resume = resolve_resume(
            cfg.checkpoint.resume_from_checkpoint, self.out_dir, log=lambda msg: print0(self.accelerator, msg)
        )
        if resume is not None:
            self.state = load_checkpoint(self.accelerator, self.scheduler, resume)  # collective
            print0(self.accelerator, f"resumed from {resume} at step {self.state.step}, epoch {self.state.epoch}")
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(f"# effective precision: {self.precision}\n{config_to_yaml(cfg)}")
        self.tracker = build_tracker(self.accelerator, self.out_dir, cfg.tracking, cfg.to_dict())
        self.stop_signal = None
        self.bad_reason = self.skipped = None
        for sig in (signal.SIGUSR1, signal.SIGTERM):  # SLURM: --signal=USR1@120, and SIGTERM before a kill
            signal.signal(sig, self._on_signal)
        print0(
            self.accelerator,
            f"world size {self.accelerator.num_processes}; precision {self.precision}; "
            f"{self.train_shards.num_samples} train samples "
            f"in {len(self.train_shards.urls)} shards; {self.total_steps} optimizer steps",
        )

    def _eval_shards(self) -> ShardSet | None:
        if self.cfg.train.eval_steps < 0:
            return None
        try:
            return load_shard_set(self.cfg.data, self.cfg.data.eval_split)
        except ValueError as exc:
            print0(self.accelerator, f"no evaluation: {exc}")
            return None

    def _check_window(self, model) -> None:
        longest = self.train_shards.max_seconds
        for who, config in (("model", model.config), ("teacher", self.teacher.config if self.teacher else None)):
            window = window_seconds(config) if config is not None else None
            if longest is not None and window is not None and longest > window + 1e-6:
                raise ValueError(
                    f"the shards may hold clips up to {longest:g} s but the {who}'s window is {window:g} s: "
                    f"re-shard with data.max_duration_seconds={window:g} or use a {who} with a longer window"
                )

    def stream(self, epoch: int, skip_items: int = 0) -> TrainStream:
        cfg = self.cfg
        return TrainStream(
            self.train_shards,
            self.tokenize,
            batch_size=cfg.train.per_device_train_batch_size,
            seed=cfg.train.seed,
            epoch=epoch,
            rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes,
            num_workers=cfg.data.num_workers,
            shuffle_buffer=cfg.train.shuffle_buffer,
            bucket_size=cfg.train.bucket_batches,
            max_samples=self.processor.feature_extractor.n_samples,
            skip_items=skip_items,
        )

    def steps_in_epoch(self, epoch: int) -> int:
        return self.stream(epoch).steps_per_epoch() // self.cfg.train.gradient_accumulation_steps

    def _plan_total_steps(self) -> int:
        if self.cfg.train.max_steps > 0:
            return self.cfg.train.max_steps
        total = sum(self.steps_in_epoch(e) for e in range(self.cfg.train.num_epochs))
        if total == 0:
            raise ValueError(self._no_batch_message())
        return total

    def _no_batch_message(self) -> str:
        shards, ranks = len(self.train_shards.urls), self.accelerator.num_processes
        workers = max(1, self.cfg.data.num_workers)
        return (
            f"{self.train_shards.num_samples} train samples in {shards} shards give some rank no full batch "
            f"(batch {self.cfg.train.per_device_train_batch_size}, {ranks} ranks x {workers} loader workers; "
            f"shards are "
            f"split by rank and worker). Re-shard with a smaller data.shard_samples (at least {ranks * workers} "
            f"shards), or lower the batch size or data.num_workers."
        )

    # ------------------------------------------------------------------------------------ loop
    def train(self) -> dict:
        state = self.state
        self.model.train()
        rank = str(self.accelerator.process_index)
        same_world = state.world_size == self.accelerator.num_processes
        if not same_world:
            print0(
                self.accelerator,
                f"world size changed ({state.world_size} -> {self.accelerator.num_processes}): "
                f"epoch {state.epoch} restarts its data order",
            )
        position = state.data_position.get(rank, 0) if same_world else 0
        self.since_log = SinceLastLog()
        progress = self._progress_bar()
        while state.step < self.total_steps:
            steps = self.steps_in_epoch(state.epoch)
            if steps == 0:
                raise ValueError(self._no_batch_message())
            loader = build_train_loader(self.stream(state.epoch, skip_items=position))
            for batch in loader:
                position += 1
                state.data_position[rank] = position
                if batch is None:  # padding that keeps the workers' round robin regular
                    continue
                with self.accelerator.accumulate(self.model):
                    self.train_step(batch)
                if not self.accelerator.sync_gradients:
                    continue
                state.step += 1
                state.epoch_step += 1
                progress.update(1)
                self.count_skipped()
                epoch_done = state.epoch_step == steps
                if epoch_done:
                    state.epoch, state.epoch_step, position = state.epoch + 1, 0, 0
                    state.data_position[rank] = 0
                self.maybe_log()
                metrics = self.maybe_evaluate(epoch_done)
                self.maybe_save(epoch_done, metrics)
                if self.preempted():
                    progress.close()
                    return self.checkpoint_and_requeue()
                if epoch_done or state.step >= self.total_steps:
                    break
        progress.close()
        return self.finish()

    def compute_loss(self, features: torch.Tensor, labels: torch.Tensor, teacher_features: torch.Tensor | None = None):
        """(loss, ce, kl): plain cross-entropy, or the distillation loss against the frozen teacher.

        A frozen encoder runs under no_grad (no activations kept); when it is also the teacher's encoder
        (``share_encoder``, see build_teacher), its output feeds both decoders and the teacher's encoder never runs.
        ``teacher_features``: the same audio in the teacher's longer window, for a student with a shorter one
        whose teacher runs its own encoder.
        """
        inputs = {"input_features": features}
        if self.cfg.train.freeze_encoder:  # the unwrapped encoder is outside the prepared model's autocast: add it
            with torch.no_grad(), self.accelerator.autocast():
                inputs = {"encoder_outputs": self.accelerator.unwrap_model(self.model).get_encoder()(features)}
        out = self.model(**inputs, labels=labels)
        if self.teacher is None:
            return out.loss, out.loss, None
        m = self.cfg.model
        with torch.no_grad(), self.accelerator.autocast():
            teacher_inputs = (
                inputs
                if self.share_encoder
                else {"input_features": features if teacher_features is None else teacher_features}
            )
            teacher_logits = self.teacher(**teacher_inputs, labels=labels).logits
        return distillation_loss(out.logits, teacher_logits, labels, m.distillation_temperature, m.distillation_alpha)

    # ------------------------------------------------------------------------------ preemption
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signal.Signals(signum).name  # acted on at the next step boundary

    def all_ranks_finite(self, loss: torch.Tensor) -> bool:
        """Collective: whether the loss is finite on every rank (so that all ranks skip the same steps)."""
        flag = torch.isfinite(loss.detach()).float().reshape(1)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() == self.accelerator.num_processes)

    def count_skipped(self) -> None:
        """After an optimizer step: count a skipped one; too many in a row stop the run (no checkpoint of it)."""
        state, limit = self.state, self.cfg.train.max_bad_steps
        if self.skipped is None:
            state.bad_streak = 0
            return
        state.skipped_steps += 1
        state.bad_streak += 1
        print0(
            self.accelerator,
            f"step {state.step}: skipped ({self.skipped}); {state.bad_streak} in a row, {state.skipped_steps} in all",
        )
        self.tracker.log({"skipped_steps": state.skipped_steps, "bad_streak": state.bad_streak}, step=state.step)
        if state.bad_streak >= limit:
            good = list_checkpoints(self.out_dir)
            last = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written"
            raise TrainingDiverged(
                f"stopped at step {state.step}: {limit} optimizer steps in a row were skipped ({self.skipped}; "
                f"train.max_bad_steps={limit}); {last}. Lower train.learning_rate or raise train.warmup_steps, prefer "
                f"bf16 to fp16, check the data, then resume with checkpoint.resume_from_checkpoint=latest"
            )

    def preempted(self) -> bool:
        """Collective: true on every rank as soon as any rank got SIGUSR1/SIGTERM."""
        flag = torch.tensor([1.0 if self.stop_signal else 0.0], device=self.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def checkpoint_and_requeue(self) -> dict:
        """Collective: save at this step boundary; under SLURM rank 0 requeues the job (it resumes from here)."""
        state = self.state
        if not (self.out_dir / f"checkpoint-{state.step}").exists():
            self.maybe_save(False, None, force=True)
        self.maybe_log(force=True)
        job = os.environ.get("SLURM_JOB_ID")
        requeued = False
        if self.is_main and job and self.cfg.train.requeue_on_preemption:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            requeued = result.returncode == 0
            print(
                f"preempted ({self.stop_signal}) at step {state.step}: checkpoint saved; scontrol requeue {job}: "
                f"{'ok' if requeued else result.stderr.strip()}",
                flush=True,
            )
        elif self.is_main:
            print(f"preempted ({self.stop_signal}) at step {state.step}: checkpoint saved", flush=True)
        self.tracker.finish()
        self.accelerator.wait_for_everyone()
        return {"preempted": True, "steps": state.step, "requeued": requeued}

    def train_step(self, batch: dict) -> None:
        """One micro-batch; at the accumulation boundary, one optimizer step, or a skipped one (self.skipped says why).

        A non-finite loss on any rank skips the whole optimizer step on every rank (the check is a collective);
        non-finite gradients (an fp16 overflow) skip the update too. Weights stay finite.
        Under DeepSpeed the engine steps inside ``backward`` and cannot be told to skip; what it does on its own is
        discard the whole accumulation window when its gradients are not finite. So a bad micro-batch is still
        backpropagated there, as NaN on every rank, and the engine's own skip is checked and counted.
        """
        audio = batch["audio"].to(self.device)
        features = self.log_mel(audio)  # [B, n_mels, frames], on the device
        if self.spec_augment is not None:
            features = self.spec_augment(features)
        teacher_features = self.teacher_log_mel(audio) if self.teacher_log_mel is not None else None
        labels = batch["labels"].to(self.device)
        loss, ce, kl = self.compute_loss(features, labels, teacher_features)
        loss_ok = self.all_ranks_finite(loss)  # collective
        if not loss_ok and self.bad_reason is None:
            self.bad_reason = "non-finite loss"
        if loss_ok:
            self.accelerator.backward(loss)
        elif self.engine_steps_in_backward:
            self.accelerator.backward(loss * float("nan"))  # NaN gradients on every rank: the engine drops the window
        if self.accelerator.sync_gradients:
            if self.engine_steps_in_backward:
                self._check_engine_step()
            else:
                self._optimizer_step()
            self.bad_reason = None
        self.optimizer.zero_grad(set_to_none=True)
        if not loss_ok:
            return
        w = self.since_log
        w.loss += loss.detach().float().item()
        w.ce += ce.detach().float().item()
        w.kl += kl.detach().float().item() if kl is not None else 0.0
        w.micro += 1
        w.samples += len(batch["keys"])
        w.over += batch.get("labels_over_limit", 0)
        w.seconds += batch["seconds"]

    def _optimizer_step(self) -> None:
        """DDP / one process: clip, then step unless this window was bad; the scheduler only after a real update."""
        self.skipped = self.bad_reason
        if self.skipped is None:
            self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
            if self.grad_norm is not None and not torch.isfinite(torch.as_tensor(self.grad_norm)).item():
                self.skipped = "non-finite gradients"
        # with fp16's grad scaler, step() must run even on inf gradients: the scaler skips the update itself
        # and lowers its scale (never calling it would keep the scale, and the overflow, forever)
        if self.skipped is None or (self.skipped == "non-finite gradients" and self.accelerator.scaler is not None):
            self.optimizer.step()
            if self.accelerator.optimizer_step_was_skipped:  # fp16: the grad scaler found inf and lowered its scale
                self.skipped = "fp16 overflow"
            elif self.skipped is None:
                self.scheduler.step()

    def _check_engine_step(self) -> None:
        """DeepSpeed: the engine has already stepped, or skipped a window with non-finite gradients. Which one?"""
        engine_skipped = self.accelerator.optimizer_step_was_skipped  # the engine's own overflow flag
        self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.skipped = self.bad_reason or ("non-finite gradients" if engine_skipped else None)
        if self.skipped is not None and not engine_skipped:
            raise RuntimeError(
                f"step {self.state.step + 1}: DeepSpeed applied an update although this window had a "
                f"{self.skipped}; this DeepSpeed version does not skip non-finite gradients"
            )
        if self.skipped is None:
            self.scheduler.step()

    # --------------------------------------------------------------------------- maybe_*
    def maybe_log(self, force: bool = False) -> None:
        """Collective when it logs (losses and counts are reduced over ranks)."""
        state, w = self.state, self.since_log
        if not force and state.step % self.cfg.train.log_every_steps != 0:
            return
        if w.micro == 0:
            return
        totals = torch.tensor(
            [w.loss, w.micro, w.samples, w.seconds, w.ce, w.kl, w.over],
            dtype=torch.float64,
            device=self.device,
        )
        totals = self.accelerator.reduce(totals, reduction="sum")  # collective
        elapsed = time.perf_counter() - w.start
        state.samples_seen += int(totals[2])
        state.audio_seconds_seen += float(totals[3])
        grad_norm = getattr(self, "grad_norm", None)
        metrics = {
            "loss": float(totals[0] / totals[1]),
            "lr": self.scheduler.get_last_lr()[0],
            "epoch": state.epoch,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "samples_per_s": float(totals[2]) / elapsed,
            "audio_s_per_s": float(totals[3]) / elapsed,
            "samples_seen": state.samples_seen,
            "skipped_steps": state.skipped_steps,
        }
        if totals[6] > 0:  # labels longer than the decoder holds: trained on their audio with no loss, counted
            metrics["labels_over_limit"] = int(totals[6])
            print0(
                self.accelerator,
                f"step {state.step}: {int(totals[6])} sample(s) with a label over "
                f"{self.tokenize.max_tokens} tokens ignored (re-shard: mwc shard quarantines them)",
            )
        if self.teacher is not None:
            metrics |= {"ce": float(totals[4] / totals[1]), "kl": float(totals[5] / totals[1])}
        self.tracker.log(metrics, step=state.step)
        self.since_log = SinceLastLog()

    def maybe_evaluate(self, epoch_done: bool, force: bool = False) -> dict | None:
        """Collective: all ranks generate for their share of the eval set."""
        every = self.cfg.train.eval_steps
        due = force or (every > 0 and self.state.step % every == 0) or (every == 0 and epoch_done)
        if self.eval_shards is None or not due:
            return None
        cfg = self.cfg
        metrics = evaluate(
            self.accelerator,
            self.model,
            self.processor,
            self.eval_shards,
            language=cfg.model.language,
            task=cfg.model.task,
            batch_size=cfg.train.per_device_eval_batch_size,
            max_length=cfg.train.generation_max_length,
            num_beams=cfg.train.num_beams,
            out_dir=self.out_dir / "eval" / f"step-{self.state.step}",
            limit=cfg.train.eval_max_samples,
            step=self.state.step,
        )
        self.state.last_eval = {"step": self.state.step, **metrics}
        self.tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step=self.state.step)
        if self.is_main:
            rows = (self.out_dir / "eval" / f"step-{self.state.step}" / "predictions.jsonl").read_text().splitlines()
            self.tracker.log_predictions([json.loads(r) for r in rows], step=self.state.step)
        print0(
            self.accelerator,
            f"step {self.state.step}: eval WER {metrics['wer']:.4f} CER {metrics['cer']:.4f} "
            f"BLEU {metrics['bleu']:.2f} chrF {metrics['chrf']:.2f} ({metrics['num_samples']} samples)",
        )
        return metrics

    def maybe_save(self, epoch_done: bool, metrics: dict | None, force: bool = False) -> None:
        """Collective: every rank writes its optimizer/RNG state; rank 0 the rest."""
        c, state = self.cfg.checkpoint, self.state
        due = (
            force
            or (c.save_strategy == "steps" and state.step % c.save_steps == 0)
            or (c.save_strategy == "epoch" and epoch_done and state.epoch % c.save_steps == 0)
        )
        if c.save_strategy == "no" or not due:
            return
        if state.bad_streak and not force:  # the last step was skipped: keep the newest checkpoint a good one
            print0(
                self.accelerator, f"step {state.step}: checkpoint postponed ({state.bad_streak} skipped steps in a row)"
            )
            return
        metric = (metrics or {}).get(c.metric_for_best_model)
        path = save_checkpoint(
            self.accelerator,
            self.model,
            self.processor,
            self.scheduler,
            state,
            self.out_dir,
            config_to_yaml(self.cfg),
            c.keep_last,
            c.greater_is_better,
            metric,
        )
        print0(self.accelerator, f"saved {path}")

    def finish(self) -> dict:
        """Collective: last log, eval and checkpoint; the final model; a cross-rank weight check."""
        from accelerate.utils import gather_object

        state, c = self.state, self.cfg.checkpoint
        self.maybe_log(force=True)
        metrics = None
        if state.last_eval.get("step") != state.step:
            metrics = self.maybe_evaluate(False, force=True)
        if c.save_strategy != "no" and not (self.out_dir / f"checkpoint-{state.step}").exists():
            self.maybe_save(False, metrics or state.last_eval or None, force=True)
        digests = gather_object([weights_digest(self.accelerator, self.model)])  # collective
        summary = {
            "world_size": self.accelerator.num_processes,
            "precision": self.precision,
            "steps": state.step,
            "param_digests": digests,
            "ranks_identical": len(set(digests)) == 1,
            "last_eval": state.last_eval,
        }
        state_dict = self.accelerator.get_state_dict(self.model)  # collective under ZeRO-3
        if self.is_main:
            best = state.best_checkpoint if self.cfg.checkpoint.load_best_model_at_end else None
            write_final(
                self.out_dir,
                self.accelerator.unwrap_model(self.model),
                state_dict,
                self.processor,
                best_model=self.out_dir / best / "model" if best else None,
                base_dir=self.base_dir,
                model_cfg=self.cfg.model,
            )
            (self.out_dir / "run_summary.json").write_text(json.dumps(summary, indent=2))
            eval_split = self.cfg.data.eval_split if self.eval_shards is not None else None
            export_final(
                self.out_dir / "final",
                self.cfg.export,
                self.cfg.data.shard_dir,
                eval_split,
                language=self.cfg.model.language,
                task=self.cfg.model.task,
            )
        self.tracker.finish()
        self.accelerator.wait_for_everyone()
        if not summary["ranks_identical"]:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        return summary

    def _progress_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc="train",
            unit="step",
            disable=not self.is_main,
            dynamic_ncols=True,
        )


def run(cfg: Config) -> int:
    """Train one run to its end; the exit status both entry points return (mwc train, python -m mwc_dist.train).

    0 done; 2 bad config or data (refused before or during setup); 3 diverged (train.max_bad_steps);
    124 preempted: checkpoint written (and the SLURM job requeued when it runs under SLURM).
    """
    trainer = Trainer(cfg)
    try:
        trainer.setup()
    except ValueError as exc:  # ConfigError, SourceError and the setup checks are ValueErrors with the fix in them
        print(f"error: {exc}", file=sys.stderr, flush=True)
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
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return BAD_INPUT_EXIT
    for note in cfg.notes:
        print(f"note: {note}", file=sys.stderr)
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
