"""REPORT.md for `mwc demo`: every number read from a metrics.json written beside its predictions.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [
    ("base", "whisper-base (imported, no fine-tuning)"),
    ("finetuned", "fine-tuned (QLoRA, merged)"),
    ("student", "student (KD; see Models), PyTorch"),
    ("student-onnx", "student, ONNX Runtime"),
    ("student-ct2", "student, CTranslate2"),
]


def _load(out: Path, name: str) -> dict | None:
    path = out / "eval" / name / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _model(folder: Path) -> str:
    """'2 decoder layers, 10-s window' from a model folder's config.json."""
    if not (folder / "config.json").is_file():
        return ""
    from transformers import WhisperConfig

    from mwc_dist.models.build import window_seconds

    config = WhisperConfig.from_pretrained(folder)
    return f"{config.decoder_layers} decoder layers, {window_seconds(config):g}-s window"


def _training(run: Path) -> str:
    """'40 steps x 16 clips, all decoder weights' from a run folder."""
    import yaml

    if not (run / "run_summary.json").is_file() or not (run / "config.yaml").is_file():
        return ""
    summary, cfg = json.loads((run / "run_summary.json").read_text()), yaml.safe_load((run / "config.yaml").read_text())
    m, t = cfg["model"], cfg["train"]
    what = "LoRA adapters on 4-bit weights" if m["use_4bit_quantization"] or m["use_lora"] else "all unfrozen weights"
    frozen = ", encoder frozen" if t["freeze_encoder"] else ""
    return (
        f"{summary['steps']} steps x {summary['world_size'] * t['per_device_train_batch_size']} clips, {what}{frozen}"
    )


def write_report(out: Path, timings: dict[str, float]) -> Path:
    m = {name: _load(out, name) for name, _ in ROWS}
    lines = [
        "# mwc-dist demo report",
        "",
        "Spanish espeak-ng speech (`mwc demo-data`), held-out test split: sentences and voices never seen in "
        "training. Metrics by jiwer/sacrebleu on the predictions files linked below (normalised with Whisper's "
        "basic normaliser; raw WER beside). Decode speed: greedy, batch 8, one process, same clips.",
        "",
        "| model | WER | raw WER | CER | BLEU | chrF | clips | decode s | x real time | predictions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in ROWS:
        r = m[name]
        if r is None:
            lines.append(f"| {label} | (not run) | | | | | | | | |")
            continue
        lines.append(
            f"| {label} | {r['wer']:.4f} | {r['raw_wer']:.4f} | {r['cer']:.4f} | {r['bleu']:.2f} | {r['chrf']:.2f} | "
            f"{r['num_samples']} | {r['decode_seconds']:.1f} | {r['audio_seconds'] / r['decode_seconds']:.1f} | "
            f"[predictions](eval/{name}/predictions.jsonl) |"
        )
    teacher, student = out / "runs" / "finetune", out / "runs" / "student"
    lines += [
        "",
        "## Models",
        "",
        f"- teacher (fine-tuned): {_model(teacher / 'final')}; trained {_training(teacher)}",
        f"- student: {_model(student / 'final')}; trained {_training(student)}, distilled from the teacher",
        "",
        "## Goals",
        "",
    ]
    if m["base"] and m["finetuned"]:
        rel = 1 - m["finetuned"]["wer"] / m["base"]["wer"] if m["base"]["wer"] else 0.0
        lines.append(
            f"- Fine-tuned WER {m['finetuned']['wer']:.4f} vs base {m['base']['wer']:.4f}: "
            f"{100 * rel:.1f} % lower (goal: at least 30 %) — **{'met' if rel >= 0.30 else 'missed'}**"
        )
    if m["finetuned"] and m["student"]:
        ratio = m["student"]["wer"] / m["finetuned"]["wer"] if m["finetuned"]["wer"] else float("inf")
        speed = m["finetuned"]["decode_seconds"] / m["student"]["decode_seconds"]
        lines.append(
            f"- Student WER {ratio:.2f}x its teacher's (goal: at most 1.3x) — **{'met' if ratio <= 1.3 else 'missed'}**"
        )
        lines.append(
            f"- Student decodes {speed:.2f}x as fast as its teacher (goal: at least 1.5x) — "
            f"**{'met' if speed >= 1.5 else 'missed'}**"
        )
    parity = out / "exports" / "student" / "parity.json"
    if parity.is_file():
        p = json.loads(parity.read_text()).get("parity", {})
        lines += ["", "## Export parity (student, 8 test clips)", ""]
        for fmt in ("onnx", "ct2"):
            if fmt in p:
                e = p[fmt]
                lines.append(
                    f"- {fmt}: {e['identical_clips']}/{p['clips']} clips with PyTorch's exact tokens, encoder "
                    f"max-abs difference {e['encoder_max_abs_diff']:.2e} — {'ok' if e['ok'] else 'FAILED'}"
                )
        lines.append("- details: [parity.json](exports/student/parity.json)")
    lines += ["", "## Training curves", ""]
    for run in ("finetune", "student"):
        if (out / "runs" / run / "training_curves.png").is_file():
            lines.append(f"![{run}](runs/{run}/training_curves.png)")
    lines += ["", "## Time per step (seconds, this machine)", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def check_report(out: Path) -> int:
    """Recompute every metric of REPORT.md's table from the predictions file its row links (jiwer/sacrebleu).

    Returns the number of rows checked; raises ValueError naming the row and the number that disagrees.
    """
    import re

    from mwc_dist.metrics import compute_metrics

    columns = {
        "WER": ("wer", 4),
        "raw WER": ("raw_wer", 4),
        "CER": ("cer", 4),
        "BLEU": ("bleu", 2),
        "chrF": ("chrf", 2),
    }
    lines = (out / "REPORT.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    checked = 0
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
        link = re.search(r"\]\(([^)]+)\)", cells.get("predictions", ""))
        if link is None:
            continue  # a model that was not run
        rows = [json.loads(x) for x in (out / link.group(1)).read_text(encoding="utf-8").splitlines()]
        language = rows[0].get("language") if rows else None
        metrics = compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], language)
        for column, (key, digits) in columns.items():
            if f"{metrics[key]:.{digits}f}" != cells[column]:
                raise ValueError(
                    f"REPORT.md row {cells['model']!r}: {column} {cells[column]} but {link.group(1)} "
                    f"gives {metrics[key]:.{digits}f}"
                )
        if int(cells["clips"]) != len(rows):
            raise ValueError(
                f"REPORT.md row {cells['model']!r}: {cells['clips']} clips but {link.group(1)} has {len(rows)}"
            )
        checked += 1
    return checked
