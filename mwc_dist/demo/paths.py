"""Where ``mwc demo`` puts each thing under its output folder (``--out``), written once: the pipeline writes there
and REPORT.md reads and links there. Every name is relative to the output folder."""

from __future__ import annotations

from pathlib import Path

CORPORA = {"indomain": "data/indomain", "ood": "data/ood"}  # audio + metadata.csv (mwc demo-data)
LONG_FORM_DATA = "data/ood-long"  # the out-of-domain clips joined into 60-90 s recordings (demo/recordings.py)
SHARDS = {"indomain": "shards", "ood": "shards-ood"}  # in domain: train, validation, test; out of domain: test
PSEUDO_LABELS = "shards-pseudo"  # the teacher's pseudo-labels of the first training shards
BASE_MODEL = "models/whisper-base"
STUDENT_INIT = "models/student-init"
RUNS = {"finetuned": "runs/finetune", "student": "runs/student"}
MODELS = {"base": BASE_MODEL, "finetuned": f"{RUNS['finetuned']}/final", "student": f"{RUNS['student']}/final"}


def exports(model: str) -> str:
    """The folder of a model's exports, one subfolder per format."""
    return f"exports/{model}"


def evaluation(split: str, model: str) -> str:
    """Short clips: predictions.jsonl + metrics.json of ``model`` (a MODELS key, or 'student-onnx'/'student-ct2')."""
    return f"eval/{split}/{model}"


def long_form_evaluation(model: str) -> str:
    """Whole recordings: predictions_long.jsonl + metrics_long.json."""
    return f"eval/ood-long/{model}"


def deployment_evaluation(test: str, model: str, tool: str) -> str:
    """One row of the deployment table: ``model``'s export in ``tool`` on ``test`` ('ood' or 'ood-long')."""
    return f"eval/deploy/{test}/{model}-{tool}"


def models(out: Path) -> dict[str, Path]:
    """The three models the demo evaluates, under ``out``."""
    return {name: out / folder for name, folder in MODELS.items()}
