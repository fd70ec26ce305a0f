"""The ``train:`` section: the training loop (train.py and loop/), checked by ``TrainConfig.validate``."""

from __future__ import annotations

from dataclasses import dataclass

MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class TrainConfig:
    """The training loop."""

    output_dir: str = "runs/default"  # checkpoints, metrics.jsonl, evaluations, final/ and the exports
    seed: int = 42  # model init, data order, augmentation and label plans
    num_epochs: int = 1  # epochs over the train split (unless max_steps)
    max_steps: int = 0  # > 0 overrides num_epochs
    per_device_train_batch_size: int = 4  # clips (or packed windows) per micro-batch on each rank
    per_device_eval_batch_size: int = 8  # clips per generation batch on each rank
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 5e-5  # AdamW's peak learning rate
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    warmup_steps: int = 0  # optimizer steps of linear warm-up to learning_rate
    lr_scheduler_type: str = "cosine"  # transformers' schedule after warm-up: cosine | linear | constant | ...
    max_grad_norm: float = 1.0  # gradients clipped to this global norm
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more time
    freeze_encoder: bool = False  # the encoder is not trained (it runs without gradients)
    freeze_embeddings: bool = False  # the decoder's token and position embeddings are not trained
    spec_augment: bool = False  # SpecAugment (time and frequency masks) on the training log-mel
    shuffle_buffer: int = 500  # samples in the shuffle buffer of each loader worker
    bucket_batches: int = 8  # batches per duration bucket (samples sorted by duration within it)
    log_every_steps: int = 10  # a metrics.jsonl row (losses reduced over ranks) every N optimizer steps
    eval_steps: int = 0  # 0 = evaluate at the end of each epoch; -1 = never
    eval_max_samples: int = 0  # 0 = the whole eval split
    generation_max_length: int = 128  # new tokens at most per evaluated clip
    num_beams: int = 1  # beam size in evaluation (1: greedy)
    requeue_on_preemption: bool = True  # under SLURM: `scontrol requeue` after the preemption checkpoint
    dist_timeout_seconds: int = 1800  # a collective waiting longer than this fails instead of hanging
    max_bad_steps: int = 10  # this many optimizer steps in a row skipped (NaN/inf loss or gradients) stop the run
    # the vocabulary projection (and softmax) only at label positions that are not padding, for the student and a
    # teacher: the same loss, less work (models/label_head.py); false: the full [batch, length, vocab] logits
    logits_at_labels_only: bool = True
    fused_optimizer: bool = True  # torch's fused AdamW kernel (one kernel over all parameters) where it runs

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key."""
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"train.mixed_precision: must be no, fp16 or bf16; got {self.mixed_precision!r}")
        if self.lr_scheduler_type not in LR_SCHEDULES:
            problems.append(
                f"train.lr_scheduler_type: one of {', '.join(LR_SCHEDULES)}; got {self.lr_scheduler_type!r}"
            )
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "max_bad_steps",
            "dist_timeout_seconds",
        ):
            if getattr(self, name) < 1:
                problems.append(f"train.{name}: must be >= 1; got {getattr(self, name)}")
        if self.learning_rate <= 0:
            problems.append(f"train.learning_rate: must be > 0; got {self.learning_rate}")
