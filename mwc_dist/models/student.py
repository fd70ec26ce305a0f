"""``mwc make-student``: a smaller Whisper initialised from a teacher, the distil-whisper way.

    mwc make-student --teacher models/whisper-base --decoder-layers 2 [--window-seconds 10] --out models/student

The encoder is copied whole; the decoder keeps N of the teacher's layers, evenly spaced with the first
and the last included; embeddings, positions and the final layer norm are copied. The tokenizer,
feature extractor and generation config are the teacher's, so the student is a drop-in replacement.

``--window-seconds`` gives the student a shorter audio window than the teacher's 30 s: the encoder keeps
the first ``50 * seconds`` of its position embeddings (the rest are never used), and the feature extractor
pads to that window. On CPU the encoder's pass over the whole padded window is most of the decode time
for short clips (whisper.cpp's ``--audio-ctx`` trades the same way); the student then takes clips up to
that length (``mwc transcribe`` cuts longer audio into windows of it). Train it on shards whose
``data.max_duration_seconds`` is at most the window.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np


def student_layer_ids(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (distil-whisper's choice)."""
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"--decoder-layers must be between 1 and the teacher's {num_teacher_layers}; got {num_student_layers}"
        )
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    return [int(i) for i in np.linspace(0, num_teacher_layers - 1, num_student_layers).round()]


def window_positions(teacher_config, window_seconds: float | None) -> int:
    """Encoder positions for a ``window_seconds`` window (50 per second), at most the teacher's."""
    if window_seconds is None:
        return teacher_config.max_source_positions
    positions = int(window_seconds) * 50
    teacher_seconds = teacher_config.max_source_positions / 50
    if not float(window_seconds).is_integer() or not 50 <= positions <= teacher_config.max_source_positions:
        raise ValueError(
            f"--window-seconds must be a whole number of seconds from 1 to the teacher's window "
            f"({teacher_seconds:g} s); got {window_seconds:g}"
        )
    return positions


def make_student(teacher, num_decoder_layers: int, window_seconds: float | None = None):
    """A new model: the teacher's encoder and ``num_decoder_layers`` of its decoder layers."""
    import torch

    ids = student_layer_ids(teacher.config.decoder_layers, num_decoder_layers)
    positions = window_positions(teacher.config, window_seconds)
    config = copy.deepcopy(teacher.config)
    config.decoder_layers = num_decoder_layers
    config.max_source_positions = positions
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
        if key == "model.encoder.embed_positions.weight":
            value = value[:positions]
        mapped[key] = value.clone()
    missing, unexpected = student.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) <= {"proj_out.weight"}, (missing, unexpected)
    student.tie_weights()
    with torch.no_grad():
        assert torch.equal(student.proj_out.weight, student.model.decoder.embed_tokens.weight)
    return student, ids


def with_window(processor, seconds: int):
    """The processor with its feature extractor padding to a ``seconds`` window instead."""
    from transformers import WhisperFeatureExtractor

    if seconds != processor.feature_extractor.chunk_length:
        fe = processor.feature_extractor.to_dict()
        fe.pop("n_samples", None), fe.pop("nb_max_frames", None)  # derived from chunk_length
        processor.feature_extractor = WhisperFeatureExtractor(**(fe | {"chunk_length": seconds}))
    return processor


def make_student_folder(
    teacher_dir: str, num_decoder_layers: int, out_dir: str, window_seconds: float | None = None
) -> tuple[Path, list[int]]:
    import json

    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mwc_dist.models.build import window_seconds as seconds_of  # the argument has the function's name

    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir)
    student, ids = make_student(teacher, num_decoder_layers, window_seconds)
    out = Path(out_dir)
    student.save_pretrained(out, safe_serialization=True)
    seconds = int(seconds_of(student.config))
    with_window(WhisperProcessor.from_pretrained(teacher_dir), seconds).save_pretrained(out)
    (out / "STUDENT_OF.json").write_text(
        json.dumps(
            {
                "teacher": str(Path(teacher_dir).resolve()),
                "teacher_decoder_layers_kept": ids,
                "window_seconds": seconds,
                "teacher_window_seconds": int(seconds_of(teacher.config)),
            }
        )
        + "\n"
    )
    return out, ids
