"""``mwc make-student``: a smaller Whisper initialised from a teacher, the distil-whisper way.

    mwc make-student --teacher models/whisper-base --decoder-layers 2 --out models/student

The encoder is copied whole; the decoder keeps N of the teacher's layers, evenly spaced with the first
and the last included; embeddings, positions and the final layer norm are copied. The tokenizer,
feature extractor and generation config are the teacher's, so the student is a drop-in replacement.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np


def student_layer_ids(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (distil-whisper's choice)."""
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(f"--decoder-layers must be between 1 and the teacher's {num_teacher_layers}; got {num_student_layers}")
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    return [int(i) for i in np.linspace(0, num_teacher_layers - 1, num_student_layers).round()]


def make_student(teacher, num_decoder_layers: int):
    """A new model: the teacher's encoder and ``num_decoder_layers`` of its decoder layers."""
    import torch

    ids = student_layer_ids(teacher.config.decoder_layers, num_decoder_layers)
    config = copy.deepcopy(teacher.config)
    config.decoder_layers = num_decoder_layers
    student = type(teacher)(config)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    state = teacher.state_dict()
    mapped = {}
    for key, value in state.items():
        if key.startswith("model.decoder.layers."):
            layer = int(key.split(".")[3])
            if layer not in ids:
                continue
            key = key.replace(f"model.decoder.layers.{layer}.", f"model.decoder.layers.{ids.index(layer)}.", 1)
        mapped[key] = value.clone()
    missing, unexpected = student.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) <= {"proj_out.weight"}, (missing, unexpected)
    student.tie_weights()
    with torch.no_grad():
        assert torch.equal(student.proj_out.weight, student.model.decoder.embed_tokens.weight)
    return student, ids


def make_student_folder(teacher_dir: str, num_decoder_layers: int, out_dir: str) -> tuple[Path, list[int]]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir)
    student, ids = make_student(teacher, num_decoder_layers)
    out = Path(out_dir)
    student.save_pretrained(out, safe_serialization=True)
    WhisperProcessor.from_pretrained(teacher_dir).save_pretrained(out)
    (out / "STUDENT_OF.json").write_text(
        f'{{"teacher": "{Path(teacher_dir).resolve()}", "teacher_decoder_layers_kept": {ids}}}\n')
    return out, ids
