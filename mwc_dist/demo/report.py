"""REPORT.md for `mwc demo`: every number read from a metrics.json written beside its predictions.jsonl, one table
per test split (out of domain first: the goals are stated against it)."""

from __future__ import annotations

import json
from pathlib import Path

from mwc_dist.demo import paths
from mwc_dist.demo.report_deploy import check_deployment, deployment_section
from mwc_dist.demo.report_longform import check_long_form, long_form_section

ROWS = [
    ("base", "whisper-base (imported, no fine-tuning)"),
    ("finetuned", "fine-tuned (QLoRA, merged)"),
    ("student", "student (KD; see Models), PyTorch"),
    ("student-onnx", "student, ONNX Runtime"),
    ("student-ct2", "student, CTranslate2"),
]


def _load(out: Path, split: str, model: str) -> dict | None:
    path = out / paths.evaluation(split, model) / "metrics.json"
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
    frozen += ", embeddings frozen" if t.get("freeze_embeddings") else ""
    d = cfg.get("data", {})
    rows = "windows of packed clips" if d.get("pack_to_window") else "clips"
    labels = ""
    if d.get("timestamp_probability") or d.get("condition_on_prev_probability"):
        labels = (
            f", {d.get('timestamp_probability', 0):.0%} with timestamps and "
            f"{d.get('condition_on_prev_probability', 0):.0%} with the previous text as the prompt"
        )
    batch = summary["world_size"] * t["per_device_train_batch_size"]
    return f"{summary['steps']} steps x {batch} {rows}, {what}{frozen}{labels}"


SPLITS = [
    (
        "ood",
        "Out-of-domain test (the headline)",
        "quotes from fortunes-es topic files never used in training (science, family, computing), spoken by the "
        "two test voices",
    ),
    (
        "indomain",
        "In-domain test",
        "unseen quotes from the training topics, spoken by the two test voices (the base model and the exports are "
        "evaluated out of domain only)",
    ),
]
COLUMNS = (
    "| model | WER | raw WER | CER | BLEU | chrF | insertions | loops | length | empty | guarded WER | guarded loops "
    "| clips | decode s | x real time | predictions |"
)


def _row(label: str, r: dict, link: str) -> str:
    g = r.get("guarded")
    guarded = f"{g['wer']:.4f} | {g['loop_rate']:.4f}" if g else "– | –"
    if g and "guard" in g and g["guard"]["logprob_threshold"] is None:
        label += " (guard: compression ratio only)"
    return (
        f"| {label} | {r['wer']:.4f} | {r['raw_wer']:.4f} | {r['cer']:.4f} | {r['bleu']:.2f} | {r['chrf']:.2f} | "
        f"{r['insertion_rate']:.4f} | {r['loop_rate']:.4f} | {r['length_ratio']:.4f} | {r['empty_rate']:.4f} | "
        f"{guarded} | {r['num_samples']} | {r['decode_seconds']:.1f} | "
        f"{r['audio_seconds'] / r['decode_seconds']:.1f} | [predictions]({link}) |"
    )


def _goals(m: dict[str, dict | None], loops: dict[str, float], guarded_loops: dict[str, float]) -> list[str]:
    """The issue's goals, stated against the out-of-domain split."""
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    if m["base"] and m["finetuned"]:
        ratio = m["finetuned"]["wer"] / m["base"]["wer"] if m["base"]["wer"] else float("inf")
        lines.append(
            f"- Fine-tuned WER {m['finetuned']['wer']:.4f} = {ratio:.2f}x base {m['base']['wer']:.4f} (goal: at most "
            f"0.4x — **{verdict(ratio <= 0.4)}**; floor: at most 0.75x — **{verdict(ratio <= 0.75)}**)"
        )
    if m["finetuned"] and m["student"]:
        ratio = m["student"]["wer"] / m["finetuned"]["wer"] if m["finetuned"]["wer"] else float("inf")
        speed = m["finetuned"]["decode_seconds"] / m["student"]["decode_seconds"]
        lines.append(f"- Student WER {ratio:.2f}x its teacher's (goal: at most 1.3x) — **{verdict(ratio <= 1.3)}**")
        lines.append(
            f"- Student decodes {speed:.2f}x as fast as its teacher here (our decoder, greedy, batch 8; the speed goal "
            f'is judged in faster-whisper, in "In the tools people deploy with" below)'
        )
    if m["base"] and m["student"]:
        ok = m["student"]["wer"] <= m["base"]["wer"]
        lines.append(
            f"- Student WER {m['student']['wer']:.4f} vs base {m['base']['wer']:.4f} (goal: never above the base) — "
            f"**{verdict(ok)}**"
        )
    for kind, rates in (("greedy", loops), ("guarded", guarded_loops)):
        if rates:
            worst = max(rates, key=rates.get)
            lines.append(
                f"- Looping hypotheses, {kind}, worst: {100 * rates[worst]:.1f} % ({worst}) (goal: at most 2 % for "
                f"every model on both test splits) — **{verdict(rates[worst] <= 0.02)}**"
            )
    return lines


def _corpus(out: Path) -> list[str]:
    counts = {}
    indomain, ood = paths.SHARDS["indomain"], paths.SHARDS["ood"]
    for shards, split in ((indomain, "train"), (indomain, "validation"), (indomain, "test"), (ood, "test")):
        path = out / shards / f"{split}.manifest.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            counts[f"{shards}/{split}"] = f"{manifest['num_samples']} clips, {60 * manifest['hours']:.1f} min"
    if not counts:
        return []
    return [
        "## Corpus",
        "",
        "Natural Spanish: the quotes of Debian's fortunes-es (5-16 words, attributions dropped), spoken by espeak-ng "
        "voices at varied speeds and pitches, in all seven audio formats (`mwc demo-data`). No sentence is in two "
        "splits; validation and test voices never speak in training. Tuning used the validation split only.",
        "",
        *[f"- {name}: {value}" for name, value in counts.items()],
        "",
    ]


def _pseudo_labels(out: Path) -> list[str]:
    """What the student learned from: the teacher's pseudo-labels (and who made them), and what the quality filter
    (the thresholds of the student's own config.yaml) dropped, by reason."""
    import yaml

    student = out / paths.RUNS["student"]
    labelled, run, config = (
        out / paths.PSEUDO_LABELS / "pseudo_labels.json",
        student / "run_summary.json",
        student / "config.yaml",
    )
    if not labelled.is_file() or not run.is_file() or not config.is_file():
        return []
    summary, dropped = json.loads(labelled.read_text()), json.loads(run.read_text()).get("pseudo_labels_dropped")
    if dropped is None:
        return []
    data = yaml.safe_load(config.read_text())["data"]
    labeller = summary.get("run", {})
    engine = {"ct2": "CTranslate2", "pytorch": "PyTorch"}.get(labeller.get("backend"), "PyTorch")
    if labeller.get("compute_type", "default") != "default":
        engine += f" {labeller['compute_type']}"
    kept = summary["num_samples"] - sum(dropped.values())
    reasons = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in dropped.items()) or "none"
    return [
        f"- the student's targets: the teacher's pseudo-labels (`mwc pseudo-label`, greedy, {engine}) of "
        f"{summary['num_samples']} training clips; the quality filter (WER against the reference <= "
        f"{data['pseudo_max_wer']:.0%}, mean log-probability >= {data['pseudo_min_avg_logprob']:g}, compression "
        f"ratio <= {data['pseudo_max_compression_ratio']:g}, no looping n-gram, not empty) kept {kept} and dropped "
        f"{sum(dropped.values())}: {reasons} ([pseudo_labels.json]({paths.PSEUDO_LABELS}/pseudo_labels.json))",
    ]


def _parity(out: Path) -> list[str]:
    parity = out / paths.exports("student") / "parity.json"
    if not parity.is_file():
        return []
    p = json.loads(parity.read_text()).get("parity", {})
    lines = ["", "## Export parity (student, 8 test clips)", ""]
    for fmt in ("onnx", "ct2"):
        if fmt in p:
            e = p[fmt]
            lines.append(
                f"- {fmt}: {e['identical_clips']}/{p['clips']} clips with PyTorch's exact tokens, encoder "
                f"max-abs difference {e['encoder_max_abs_diff']:.2e} — {'ok' if e['ok'] else 'FAILED'}"
            )
    lines.append(f"- details: [parity.json]({paths.exports('student')}/parity.json)")
    warning = json.loads(parity.read_text()).get("warning")
    if warning:  # a parity in our own decoder is not a deployment: say which tools cannot run it
        lines.append(f"- **deployment**: {warning}")
    return lines


def write_report(out: Path, timings: dict[str, float]) -> Path:
    lines = [
        "# mwc-dist demo report",
        "",
        "Metrics by jiwer/sacrebleu on the predictions files linked below (normalised with Whisper's basic "
        "normaliser; raw WER beside). Hallucination columns: inserted words per reference word, share of hypotheses "
        "that loop (an n-gram 3+ times in a row), hypothesis/reference length, share of empty hypotheses. "
        "Guarded: the same model with Whisper's temperature fallback (compression ratio > 2.4, mean log-probability "
        "< -1 or a word n-gram 3 times in a row: sample again at 0.2 ... 1.0). Decode speed: greedy (the guard's "
        "fallbacks not counted), batch 8, one process, same clips.",
        "",
        *_corpus(out),
    ]
    loops: dict[str, float] = {}
    guarded_loops: dict[str, float] = {}
    headline: dict[str, dict | None] = {}
    for split, title, what in SPLITS:
        m = {name: _load(out, split, name) for name, _ in ROWS}
        headline = headline or m
        loops |= {f"{name}, {split}": r["loop_rate"] for name, r in m.items() if r}
        guarded_loops |= {
            f"{name}, {split}": r["guarded"]["loop_rate"] for name, r in m.items() if r and "guarded" in r
        }
        lines += [f"## {title}", "", what + ".", "", COLUMNS, "|" + " --- |" * 16]
        lines += [
            _row(label, m[name], f"{paths.evaluation(split, name)}/predictions.jsonl")
            for name, label in ROWS
            if m[name] is not None  # the demo evaluates the base and the exports out of domain only
        ]
        lines.append("")
    teacher, student = out / paths.RUNS["finetuned"], out / paths.RUNS["student"]
    lines += [
        "## Models",
        "",
        f"- teacher (fine-tuned): {_model(teacher / 'final')}; trained {_training(teacher)}",
        f"- student: {_model(student / 'final')}; trained {_training(student)}, distilled from the teacher",
        *_pseudo_labels(out),
        "",
        "## Goals (out-of-domain test split)",
        "",
        *_goals(headline, loops, guarded_loops),
    ]
    lines += _parity(out)
    lines += ["", *long_form_section(out)]
    lines += deployment_section(out)
    lines += ["## Training curves", ""]
    for run in paths.RUNS.values():
        if (out / run / "training_curves.png").is_file():
            lines.append(f"![{Path(run).name}]({run}/training_curves.png)")
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
        "WER": ("prediction", "wer", 4),
        "raw WER": ("prediction", "raw_wer", 4),
        "CER": ("prediction", "cer", 4),
        "BLEU": ("prediction", "bleu", 2),
        "chrF": ("prediction", "chrf", 2),
        "insertions": ("prediction", "insertion_rate", 4),
        "loops": ("prediction", "loop_rate", 4),
        "length": ("prediction", "length_ratio", 4),
        "empty": ("prediction", "empty_rate", 4),
        "guarded WER": ("prediction_guarded", "wer", 4),
        "guarded loops": ("prediction_guarded", "loop_rate", 4),
    }
    lines = (out / "REPORT.md").read_text().splitlines()
    checked = 0
    for names, line in _table_rows(lines):
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
        link = re.search(r"\]\(([^)]+)\)", cells.get("predictions", ""))
        if link is None:
            continue  # a model that was not run
        rows = [json.loads(x) for x in (out / link.group(1)).read_text(encoding="utf-8").splitlines()]
        language = rows[0].get("language") if rows else None
        metrics = {
            field: compute_metrics([r["reference"] for r in rows], [r[field] for r in rows], language)
            for field in ("prediction", "prediction_guarded")
            if rows and field in rows[0]
        }
        for column, (field, key, digits) in columns.items():
            if field not in metrics:
                if cells[column] != "–":
                    raise ValueError(f"REPORT.md row {cells['model']!r}: {column} {cells[column]} without predictions")
                continue
            value = metrics[field][key]
            if f"{value:.{digits}f}" != cells[column]:
                raise ValueError(
                    f"REPORT.md row {cells['model']!r}: {column} {cells[column]} but {link.group(1)} "
                    f"gives {value:.{digits}f}"
                )
        if int(cells["clips"]) != len(rows):
            raise ValueError(
                f"REPORT.md row {cells['model']!r}: {cells['clips']} clips but {link.group(1)} has {len(rows)}"
            )
        checked += 1
    return checked + check_long_form(out) + check_deployment(out)


def _table_rows(lines: list[str]):
    """(column names, row line) for every row of every ``| model |`` table."""
    for i, line in enumerate(lines):
        if not line.startswith("| model |"):
            continue
        names = [c.strip() for c in line.strip("|").split("|")]
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            yield names, row
