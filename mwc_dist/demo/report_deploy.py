"""REPORT.md's deployment table: base, fine-tuned and student decoded by faster-whisper (CTranslate2 export) and
transformers' pipeline (SafeTensors export) on the out-of-domain clips and recordings (mwc_dist.deployment); every
number read from a metrics.json and checked again against the predictions.jsonl beside it."""

from __future__ import annotations

import json
from pathlib import Path

from mwc_dist.demo.paths import deployment_evaluation

MODELS = [("base", "whisper-base (no fine-tuning)"), ("finetuned", "fine-tuned (the teacher)"), ("student", "student")]
TOOLS = [
    (
        "faster-whisper",
        "faster-whisper `transcribe`, CTranslate2 int8, its defaults (beam 5, timestamps, previous text)",
    ),
    ("pipeline", "transformers `pipeline`, float32, chunked (30 s)"),
]
TESTS = [("ood", "48 clips"), ("ood-long", "3 recordings")]
HEADER = "| deployed model | tool | test | WER | CER | files | audio s | decode s | x real time | predictions |"
SPEED_GOAL, WER_GOAL = 1.5, 1.3  # the student: at least 1.5x as fast as its teacher, WER at most 1.3x


def _load(out: Path, test: str, model: str, tool: str) -> dict | None:
    path = out / deployment_evaluation(test, model, tool) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def deployment_section(out: Path) -> list[str]:
    """The table and the student's goals judged in it; [] when the demo ran no deployment evaluation."""
    m = {(t, mo, to): _load(out, t, mo, to) for t, _ in TESTS for mo, _ in MODELS for to, _ in TOOLS}
    if not any(m.values()):
        return []
    lines = [
        "## In the tools people deploy with (out of domain)",
        "",
        "The exports loaded by the tools users deploy with, called as their docs show, one file at a time, the "
        "language given, everything else their defaults (`mwc_dist/deployment.py`):",
        "",
        *[f"- {name}: {what}" for name, what in TOOLS],
        "",
        "Short clips: the 48 out-of-domain test clips; long-form: the 3 out-of-domain recordings, whole. Decode "
        "seconds after a warm-up call; 2 CPU threads. faster-whisper decodes again any window that looks like a "
        "loop or that it is unsure of (mean log-probability under -1: up to five more times, best of 5); the "
        "pipeline decodes greedily without that fallback (its default), so a hypothesis that loops runs to the "
        "model's 448-token limit and counts in full.",
        "",
        HEADER,
        "|" + " --- |" * 10,
    ]
    for (test, model, tool), r in m.items():
        if r is None:
            continue
        label = dict(MODELS)[model]
        lines.append(
            f"| {label} | {tool} | {test} | {r['wer']:.4f} | {r['cer']:.4f} | {r['num_samples']} | "
            f"{r['audio_seconds']:.0f} | {r['decode_seconds']:.1f} | {r['audio_seconds'] / r['decode_seconds']:.1f} | "
            f"[predictions]({deployment_evaluation(test, model, tool)}/predictions.jsonl) |"
        )
    return lines + ["", *_goals(m), ""]


def _goals(m: dict) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    for test, what in TESTS:
        teacher, student = m[(test, "finetuned", "faster-whisper")], m[(test, "student", "faster-whisper")]
        if teacher and student:
            ratio = student["wer"] / teacher["wer"] if teacher["wer"] else float("inf")
            speed = teacher["decode_seconds"] / student["decode_seconds"]
            lines += [
                f"- faster-whisper, {test} ({what}): student WER {student['wer']:.4f} = {ratio:.2f}x its teacher's "
                f"(goal: at most {WER_GOAL}x) — **{verdict(ratio <= WER_GOAL)}**; it decodes {speed:.2f}x as fast "
                f"(goal: at least {SPEED_GOAL}x) — **{verdict(speed >= SPEED_GOAL)}**"
            ]
    teacher, student = m[("ood-long", "finetuned", "pipeline")], m[("ood-long", "student", "pipeline")]
    if teacher and student:
        ok = student["decode_seconds"] <= teacher["decode_seconds"]
        lines.append(
            f"- transformers pipeline, chunked long-form: the student takes {student['decode_seconds']:.1f} s, its "
            f"teacher {teacher['decode_seconds']:.1f} s (goal: no slower) — **{verdict(ok)}**"
        )
    return lines


def check_deployment(out: Path) -> int:
    """Recompute the WER and CER of every deployment row from the predictions file it links; the rows checked."""
    import re

    from mwc_dist.metrics import compute_metrics

    lines = (out / "REPORT.md").read_text(encoding="utf-8").splitlines()
    if HEADER not in lines:
        return 0
    checked = 0
    for line in lines[lines.index(HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        link = re.search(r"\]\(([^)]+)\)", cells[-1]).group(1)
        rows = [json.loads(x) for x in (out / link).read_text(encoding="utf-8").splitlines()]
        metrics = compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], rows[0]["language"])
        expected = [f"{metrics['wer']:.4f}", f"{metrics['cer']:.4f}", str(len(rows))]
        if cells[3:6] != expected:
            raise ValueError(
                f"REPORT.md deployment row {cells[:3]}: WER, CER, files {cells[3:6]} but {link} gives {expected}"
            )
        checked += 1
    return checked
