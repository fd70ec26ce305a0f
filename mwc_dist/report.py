"""REPORT.md for `mwc demo`: every number read from a metrics.json written beside its predictions.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [("base", "whisper-base (imported, no fine-tuning)"), ("finetuned", "fine-tuned (QLoRA, merged)"),
        ("student", "student, 2 decoder layers (KD), PyTorch"), ("student-onnx", "student, ONNX Runtime"),
        ("student-ct2", "student, CTranslate2")]


def _load(out: Path, name: str) -> dict | None:
    path = out / "eval" / name / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(out: Path, timings: dict[str, float]) -> Path:
    m = {name: _load(out, name) for name, _ in ROWS}
    lines = ["# mwc-dist demo report", "",
             "Spanish espeak-ng speech (`mwc demo-data`), held-out test split: sentences and voices never seen in "
             "training. Metrics by jiwer/sacrebleu on the predictions files linked below (normalised with Whisper's "
             "basic normaliser; raw WER beside). Decode speed: greedy, batch 8, one process, same clips.", "",
             "| model | WER | raw WER | CER | BLEU | chrF | clips | decode s | x real time | predictions |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, label in ROWS:
        r = m[name]
        if r is None:
            lines.append(f"| {label} | (not run) | | | | | | | | |")
            continue
        lines.append(f"| {label} | {r['wer']:.4f} | {r['raw_wer']:.4f} | {r['cer']:.4f} | {r['bleu']:.2f} | {r['chrf']:.2f} | "
                     f"{r['num_samples']} | {r['decode_seconds']:.1f} | {r['audio_seconds'] / r['decode_seconds']:.1f} | "
                     f"[predictions](eval/{name}/predictions.jsonl) |")
    lines += ["", "## Goals", ""]
    if m["base"] and m["finetuned"]:
        rel = 1 - m["finetuned"]["wer"] / m["base"]["wer"] if m["base"]["wer"] else 0.0
        lines.append(f"- Fine-tuned WER {m['finetuned']['wer']:.4f} vs base {m['base']['wer']:.4f}: "
                     f"{100 * rel:.1f} % lower (goal: at least 30 %) — **{'met' if rel >= 0.30 else 'missed'}**")
    if m["finetuned"] and m["student"]:
        ratio = m["student"]["wer"] / m["finetuned"]["wer"] if m["finetuned"]["wer"] else float("inf")
        speed = m["finetuned"]["decode_seconds"] / m["student"]["decode_seconds"]
        lines.append(f"- Student WER {ratio:.2f}x its teacher's (goal: at most 1.3x) — **{'met' if ratio <= 1.3 else 'missed'}**")
        lines.append(f"- Student decodes {speed:.2f}x as fast as its teacher (goal: at least 1.5x) — "
                     f"**{'met' if speed >= 1.5 else 'missed'}**")
    parity = out / "exports" / "student" / "parity.json"
    if parity.is_file():
        p = json.loads(parity.read_text()).get("parity", {})
        lines += ["", "## Export parity (student, 8 test clips)", ""]
        for fmt in ("onnx", "ct2"):
            if fmt in p:
                e = p[fmt]
                lines.append(f"- {fmt}: {e['identical_clips']}/{p['clips']} clips with PyTorch's exact tokens, encoder "
                             f"max-abs difference {e['encoder_max_abs_diff']:.2e} — {'ok' if e['ok'] else 'FAILED'}")
        lines.append(f"- details: [parity.json](exports/student/parity.json)")
    lines += ["", "## Training curves", ""]
    for run in ("finetune", "student"):
        if (out / "runs" / run / "training_curves.png").is_file():
            lines.append(f"![{run}](runs/{run}/training_curves.png)")
    lines += ["", "## Time per step (seconds, this machine)", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
