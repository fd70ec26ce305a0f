"""REPORT.md's long-form table: whole out-of-domain recordings decoded sequentially (mwc_dist.longform), every
number read from a metrics_long.json and checked again against the predictions_long.jsonl beside it."""

from __future__ import annotations

import json
from pathlib import Path

from mwc_dist.demo.paths import long_form_evaluation

ROWS = [
    ("base", "whisper-base (imported, no fine-tuning)"),
    ("finetuned", "fine-tuned (QLoRA, merged)"),
    ("student", "student (KD), PyTorch"),
]
HEADER = (
    "| long-form model | WER | CER | median start error (s) | loops | truncated | recordings | audio s | decode s "
    "| x real time | decoding | predictions |"
)


def _load(out: Path, name: str) -> dict | None:
    path = out / long_form_evaluation(name) / "metrics_long.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _cells(m: dict) -> list[str]:
    s = m["sequential"]
    start = "–" if s["median_start_error"] is None else f"{s['median_start_error']:.3f}"
    return [f"{s['wer']:.4f}", f"{s['cer']:.4f}", start, str(s["loops"]), str(s["truncated"])]


def long_form_section(out: Path) -> list[str]:
    """The table and its goals; [] when the demo ran no long-form evaluation."""
    metrics = {name: _load(out, name) for name, _ in ROWS}
    if not any(metrics.values()):
        return []
    lines = [
        "## Long-form test (out of domain, whole recordings)",
        "",
        "The out-of-domain test clips joined into recordings of 60-90 s with 0.5-1.5 s pauses (`data/ood-long`, true "
        "segment times in an SRT beside each). Decoded sequentially as Whisper's long-form decoders do (the model's "
        "own timestamps decide where the next window starts; the previous text as the prompt; temperature fallback). "
        "WER/CER over whole recordings; start error: each predicted segment's start against the nearest true one; "
        "truncated: under 80 % of the reference's words.",
        "",
        HEADER,
        "|" + " --- |" * 12,
    ]
    for name, label in ROWS:
        m = metrics[name]
        if m is None:
            continue
        s = m["sequential"]
        link = f"{long_form_evaluation(name)}/predictions_long.jsonl"
        mode = ", ".join(s["modes"])
        rtf = m["audio_seconds"] / s["decode_seconds"] if s["decode_seconds"] else 0.0
        lines.append(
            f"| {label} | {' | '.join(_cells(m))} | {m['num_recordings']} | {m['audio_seconds']:.0f} | "
            f"{s['decode_seconds']:.1f} | {rtf:.1f} | {mode} | [predictions]({link}) |"
        )
    lines += ["", *_goals(metrics), ""]
    return lines


def _goals(m: dict[str, dict | None]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    lines = []
    base, tuned = m["base"], m["finetuned"]
    if base and tuned:
        ratio = tuned["sequential"]["wer"] / base["sequential"]["wer"] if base["sequential"]["wer"] else float("inf")
        lines.append(
            f"- Long-form: fine-tuned WER {ratio:.2f}x the base's (goal: at most 0.5x) — **{verdict(ratio <= 0.5)}**"
        )
    if tuned:
        start = tuned["sequential"]["median_start_error"]
        ok = start is not None and start <= 0.3
        shown = "–" if start is None else f"{start:.3f} s"
        lines.append(f"- Long-form: fine-tuned median start error {shown} (goal: at most 0.3 s) — **{verdict(ok)}**")
        bad = tuned["sequential"]["loops"] + tuned["sequential"]["truncated"]
        lines.append(
            f"- Long-form: fine-tuned recordings looping or truncated: {bad} (goal: none) — **{verdict(bad == 0)}**"
        )
    return lines


def check_long_form(out: Path) -> int:
    """Recompute every long-form row of REPORT.md from the predictions_long.jsonl it links; returns rows checked."""
    import re

    from mwc_dist.longform import score_long_form

    checked = 0
    for line in (out / "REPORT.md").read_text().splitlines():
        link = re.search(r"\]\((eval/ood-long/[^)]+predictions_long\.jsonl)\)", line)
        if not line.startswith("|") or link is None:
            continue
        rows = [json.loads(x) for x in (out / link.group(1)).read_text(encoding="utf-8").splitlines()]
        cells = [c.strip() for c in line.strip("|").split("|")]
        again = _cells(score_long_form(rows, rows[0].get("language", "es") if rows else "es"))
        if cells[1:6] != again:
            raise ValueError(f"REPORT.md long-form row {cells[0]!r}: {cells[1:6]} but {link.group(1)} gives {again}")
        checked += 1
    return checked
