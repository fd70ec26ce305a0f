"""The ``model:`` section: which Whisper is trained and how (distillation and QLoRA/LoRA settings, as in the
seed), checked by ``ModelConfig.validate``; read by models/build.py, models/teacher.py and models/lora.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from mwc_dist.languages import resolve_section_language

TASKS = ("transcribe", "translate")  # Whisper's task tokens


@dataclass
class ModelConfig:
    """Which Whisper to train and how (distillation and QLoRA settings live here as in the seed)."""

    base_model: str = "tiny-random"  # local HF folder, hub name, or a size preset
    language: str | None = "spanish"  # the language token trained and decoded with (a code or a name); null: the data's
    task: str = "transcribe"  # transcribe | translate
    use_distillation: bool = False  # train against a teacher: (1 - alpha) x cross-entropy + alpha x KL to the teacher
    teacher_model: str | None = None  # the teacher (a folder or a preset), frozen; needs the student's vocabulary
    distillation_temperature: float = 2.0  # softens both distributions in the KL term
    distillation_alpha: float = 0.5  # the KL term's weight (0: cross-entropy only, 1: KL only)
    # a student with a shorter window than its teacher (make-student --window-seconds) and the teacher's frozen
    # encoder: "own" runs the teacher's encoder on its own (30-s) window; "student" feeds the teacher's decoder
    # the student's encoder output (one short encoder pass per step instead of two, the teacher then sees the
    # short window too)
    distillation_teacher_window: str = "own"
    # where the teacher's distribution comes from: "teacher" runs model.teacher_model beside the student; "shards"
    # reads the top-k log-probabilities `mwc pseudo-label --store-topk K` stored (no teacher in memory; train on the
    # pseudo-labels, data.text_field=teacher_text, without timestamps, prompts or packing)
    distillation_source: str = "teacher"
    use_4bit_quantization: bool = (
        False  # QLoRA: the base weights in 4 bits (bitsandbytes), LoRA adapters trained on top
    )
    bnb_4bit_quant_type: str = "nf4"  # nf4 | fp4
    bnb_4bit_compute_dtype: str = "float16"  # the dtype the 4-bit layers compute in: float16 | bfloat16 | float32
    bnb_4bit_use_double_quant: bool = True  # quantise the quantisation constants too (less memory)
    use_lora: bool = False  # train LoRA adapters (PEFT) instead of the weights; merged into final/
    lora_r: int = 16  # the adapters' rank
    lora_alpha: int = 32  # their scale (alpha / r)
    lora_dropout: float = 0.1  # dropout on the adapters' input
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"]
    )  # the Linear layers that get adapters
    # -1: adapters in every encoder layer; N: only in the top N (0: none), so the backward pass stops N layers
    # into the encoder (with train.freeze_encoder false): most of the encoder's adaptation at a fraction of its cost
    lora_encoder_layers: int = -1

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key (``language`` becomes a code)."""
        resolve_section_language(self, "model", problems)
        if self.task not in TASKS:
            problems.append(f"model.task: one of {', '.join(TASKS)}; got {self.task!r}")
        if not 0.0 <= self.distillation_alpha <= 1.0:
            problems.append(f"model.distillation_alpha: must be in [0, 1]; got {self.distillation_alpha}")
        if self.distillation_temperature <= 0:
            problems.append(f"model.distillation_temperature: must be > 0; got {self.distillation_temperature}")
        if self.distillation_teacher_window not in ("own", "student"):
            problems.append(
                f"model.distillation_teacher_window: 'own' or 'student'; got {self.distillation_teacher_window!r}"
            )
        if self.distillation_source not in ("teacher", "shards"):
            problems.append(f"model.distillation_source: 'teacher' or 'shards'; got {self.distillation_source!r}")
        if self.use_distillation and not self.teacher_model and self.distillation_source == "teacher":
            problems.append(
                "model.teacher_model: required when model.use_distillation is true (or "
                "model.distillation_source=shards with top-k stored by `mwc pseudo-label --store-topk K`)"
            )
        if self.lora_encoder_layers < -1:
            problems.append(
                f"model.lora_encoder_layers: -1 (every layer) or a count >= 0; got {self.lora_encoder_layers}"
            )
        if self.bnb_4bit_quant_type not in ("nf4", "fp4"):
            problems.append(f"model.bnb_4bit_quant_type: must be nf4 or fp4; got {self.bnb_4bit_quant_type!r}")
        if self.bnb_4bit_compute_dtype not in ("float16", "bfloat16", "float32"):
            problems.append(
                f"model.bnb_4bit_compute_dtype: float16, bfloat16 or float32; got {self.bnb_4bit_compute_dtype!r}"
            )
