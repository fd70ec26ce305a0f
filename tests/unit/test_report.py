"""REPORT.md of `mwc demo`: every number equals what jiwer/sacrebleu compute from the predictions file it links."""

import json

import pytest

from mwc_dist.demo.report import check_report, write_report
from mwc_dist.evaluate import write_eval
from mwc_dist.metrics import compute_metrics

REFS = ["el niño lee un libro nuevo", "la abuela compra el pan caliente", "mi padre abre la puerta verde"]
PREDICTIONS = {
    "base": ["el nino lee un libro", "la abuela compra pan caliente", "mi padre abre la puerta"],
    "finetuned": ["el niño lee un libro nuevo", "la abuela compra el pan caliente", "mi padre abre la puerta"],
    "student": ["el niño lee un libro nuevo", "la abuela compra el pan caliente", "mi padre abre la puerta verde"],
}


def _demo_folder(tmp_path):
    guarded = PREDICTIONS["finetuned"]  # what the base's fallback decoding is made to give here
    for split in ("ood", "indomain"):
        for name, predictions in PREDICTIONS.items():
            rows = [
                {"key": f"k{i}", "reference": r, "prediction": p, "language": "es"}
                for i, (r, p) in enumerate(zip(REFS, predictions))
            ]
            metrics = compute_metrics(REFS, predictions, "es") | {
                "audio_seconds": 9.0,
                "decode_seconds": {"student": 1.0}.get(name, 4.0),
            }
            if name == "base":
                for row, g in zip(rows, guarded):
                    row |= {"prediction_guarded": g, "fallback_temperature": 0.2}
                metrics["guarded"] = compute_metrics(REFS, guarded, "es") | {"guard": {"logprob_threshold": None}}
            write_eval(tmp_path / "eval" / split / name, rows, metrics)
    for run, cfg in (
        ("finetune", {"use_4bit_quantization": True, "use_lora": False}),
        ("student", {"use_4bit_quantization": False, "use_lora": False}),
    ):
        (tmp_path / "runs" / run).mkdir(parents=True)
        (tmp_path / "runs" / run / "run_summary.json").write_text(json.dumps({"steps": 12, "world_size": 2}))
        (tmp_path / "runs" / run / "config.yaml").write_text(
            json.dumps({"model": cfg, "train": {"per_device_train_batch_size": 8, "freeze_encoder": True}})
        )
    return write_report(tmp_path, {"distill": 200.0})


def test_report_numbers_are_the_predictions_files_metrics(tmp_path):
    report = _demo_folder(tmp_path).read_text()
    student_wer = compute_metrics(REFS, PREDICTIONS["student"], "es")["wer"]
    base_wer = compute_metrics(REFS, PREDICTIONS["base"], "es")["wer"]
    assert student_wer == 0.0 and base_wer > 0.2
    assert f"| {base_wer:.4f} |" in report
    assert "decodes 4.00x as fast" in report and "trained 12 steps x 16 clips, LoRA adapters" in report
    assert report.index("## Out-of-domain test") < report.index("## In-domain test") < report.index("## Goals")
    finetuned_wer = compute_metrics(REFS, PREDICTIONS["finetuned"], "es")["wer"]
    assert f"| {finetuned_wer:.4f} | 0.0000 |" in report  # the base's guarded WER and loops
    assert f"{finetuned_wer / base_wer:.2f}x base" in report
    assert "(goal: never above the base) — **met**" in report
    assert "| whisper-base (imported, no fine-tuning) (guard: compression ratio only) |" in report
    assert "Looping hypotheses, greedy, worst: 0.0 %" in report
    assert "Looping hypotheses, guarded, worst: 0.0 %" in report
    assert check_report(tmp_path) == 6  # 3 models x 2 splits; the ONNX and CT2 rows were not run


@pytest.mark.parametrize(
    "where, field, row, message",
    [
        ("indomain/finetuned", "prediction", 2, "fine-tuned.*WER"),
        ("ood/base", "prediction_guarded", 0, "whisper-base.*guarded WER"),
    ],
)
def test_a_changed_predictions_file_fails_the_check(tmp_path, where, field, row, message):
    _demo_folder(tmp_path)
    path = tmp_path / "eval" / where / "predictions.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[row][field] = "otra cosa otra cosa otra cosa"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(ValueError, match=message):
        check_report(tmp_path)


def test_report_says_what_the_pseudo_label_filter_dropped(tmp_path):
    _demo_folder(tmp_path)
    (tmp_path / "shards-pseudo").mkdir()
    labeller = {"backend": "ct2", "compute_type": "int8"}
    (tmp_path / "shards-pseudo" / "pseudo_labels.json").write_text(json.dumps({"num_samples": 500, "run": labeller}))
    student = tmp_path / "runs" / "student"
    dropped = {"wer_vs_reference": 61, "repeated_ngram": 2}
    summary = json.loads((student / "run_summary.json").read_text()) | {"pseudo_labels_dropped": dropped}
    (student / "run_summary.json").write_text(json.dumps(summary))
    config = json.loads((student / "config.yaml").read_text())
    filter_keys = {"pseudo_max_wer": 0.25, "pseudo_min_avg_logprob": -0.8, "pseudo_max_compression_ratio": 2.4}
    (student / "config.yaml").write_text(json.dumps(config | {"data": filter_keys}))  # JSON is YAML
    report = write_report(tmp_path, {}).read_text()
    assert "pseudo-labels (`mwc pseudo-label`, greedy, CTranslate2 int8) of 500 training clips" in report
    assert "WER against the reference <= 25%, mean log-probability >= -0.8, compression ratio <= 2.4" in report
    assert "kept 437 and dropped 63: 61 wer vs reference, 2 repeated ngram" in report


def test_export_rows_appear_only_where_the_exports_were_evaluated(tmp_path):
    """The demo evaluates its exports out of domain only: their rows stand in that table and not in the other."""
    _demo_folder(tmp_path)
    rows = [{"key": f"k{i}", "reference": r, "prediction": r, "language": "es"} for i, r in enumerate(REFS)]
    metrics = compute_metrics(REFS, REFS, "es") | {"audio_seconds": 9.0, "decode_seconds": 1.0}
    write_eval(tmp_path / "eval" / "ood" / "student-onnx", rows, metrics)
    report = write_report(tmp_path, {}).read_text()
    ood, indomain = report.split("## In-domain test")
    assert ood.count("student, ONNX Runtime") == 1 and "student, ONNX Runtime" not in indomain
    assert "student, CTranslate2" not in report and "(not run)" not in report
    assert check_report(tmp_path) == 7


def test_report_states_each_exports_parity_from_parity_json(tmp_path):
    _demo_folder(tmp_path)
    parity = {
        "clips": 8,
        "onnx": {"identical_clips": 8, "encoder_max_abs_diff": 2.5e-6, "ok": True},
        "ct2": {"identical_clips": 6, "encoder_max_abs_diff": 0.031, "ok": False},
    }
    (tmp_path / "exports" / "student").mkdir(parents=True)
    (tmp_path / "exports" / "student" / "parity.json").write_text(json.dumps({"parity": parity}))
    report = write_report(tmp_path, {}).read_text()
    assert "- onnx: 8/8 clips with PyTorch's exact tokens, encoder max-abs difference 2.50e-06 — ok" in report
    assert "- ct2: 6/8 clips with PyTorch's exact tokens, encoder max-abs difference 3.10e-02 — FAILED" in report


def test_long_form_table_is_recomputed_from_its_predictions(tmp_path):
    from mwc_dist.longform import score_long_form

    ref = [{"start": 0.5, "end": 2.0, "text": REFS[0]}, {"start": 3.0, "end": 5.0, "text": REFS[1]}]
    for name, predictions in PREDICTIONS.items():
        rows = [
            {
                "key": "talk_000",
                "language": "es",
                "seconds": 70.0,
                "reference": " ".join(REFS[:2]),
                "reference_segments": ref,
                "prediction": " ".join(predictions[:2]),
                "segments": [],
                "mode": "sequential",
                "decode_seconds": 7.0,
                "start_errors": [0.1, 0.5] if name == "finetuned" else [0.2, 0.9, 1.1],
            }
        ]
        folder = tmp_path / "eval" / "ood-long" / name
        folder.mkdir(parents=True)
        (folder / "predictions_long.jsonl").write_text(json.dumps(rows[0]) + "\n")
        (folder / "metrics_long.json").write_text(json.dumps(score_long_form(rows, "es")))
    report = _demo_folder(tmp_path).read_text()
    assert "## Long-form test" in report and "median start error 0.300 s (goal: at most 0.3 s) — **met**" in report
    assert check_report(tmp_path) == 6 + 3  # the short-form rows (3 models, 2 splits) and the long-form rows
    path = tmp_path / "eval" / "ood-long" / "base" / "predictions_long.jsonl"
    row = json.loads(path.read_text())
    path.write_text(json.dumps(row | {"prediction": "nada"}) + "\n")  # the table no longer matches its file
    with pytest.raises(ValueError, match="long-form row"):
        check_report(tmp_path)


def _deployment_rows(tmp_path, seconds: dict[tuple[str, str], float]):
    """Deployment rows for every model, tool and test; decode seconds from ``seconds`` by (model, tool)."""
    from mwc_dist.demo.paths import deployment_evaluation

    for test in ("ood", "ood-long"):
        for name, predictions in PREDICTIONS.items():
            for tool in ("faster-whisper", "pipeline"):
                rows = [
                    {"key": f"k{i}", "reference": r, "prediction": p, "language": "es"}
                    for i, (r, p) in enumerate(zip(REFS, predictions))
                ]
                metrics = compute_metrics(REFS, predictions, "es")
                metrics |= {"num_samples": 3, "audio_seconds": 9.0, "decode_seconds": seconds[(name, tool)]}
                write_eval(tmp_path / deployment_evaluation(test, name, tool), rows, metrics)


def test_deployment_table_judges_the_student_in_the_deployment_tools(tmp_path):
    """The student's speed goal is judged in faster-whisper (1.5x its teacher), the pipeline's on long-form (no
    slower); every row is recomputed from the predictions file it links."""
    seconds = {(n, t): 4.0 for n in PREDICTIONS for t in ("faster-whisper", "pipeline")}
    seconds |= {("student", "faster-whisper"): 2.0, ("student", "pipeline"): 5.0}
    _deployment_rows(tmp_path, seconds)
    report = _demo_folder(tmp_path).read_text()
    assert "## In the tools people deploy with" in report
    student_wer = compute_metrics(REFS, PREDICTIONS["student"], "es")["wer"]
    line = f"| student | faster-whisper | ood | {student_wer:.4f} |"
    assert line in report and "| 9 | 2.0 | 4.5 |" in report.split(line)[1].splitlines()[0]
    assert (
        "faster-whisper, ood (48 clips): student WER 0.0000 = 0.00x its teacher's (goal: at most 1.3x) — **met**"
        in (report)
    )
    assert "it decodes 2.00x as fast (goal: at least 1.5x) — **met**" in report
    assert "the student takes 5.0 s, its teacher 4.0 s (goal: no slower) — **missed**" in report
    assert check_report(tmp_path) == 6 + 12  # short-form rows and 3 models x 2 tools x 2 tests
    path = tmp_path / "eval" / "deploy" / "ood-long" / "finetuned-pipeline" / "predictions.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["prediction"] = "nada"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(ValueError, match="deployment row.*finetuned|deployment row.*fine-tuned"):
        check_report(tmp_path)


def test_a_slow_student_misses_the_deployment_speed_goal(tmp_path):
    seconds = {(n, t): 4.0 for n in PREDICTIONS for t in ("faster-whisper", "pipeline")}
    seconds |= {("student", "faster-whisper"): 3.0}  # 1.33x: under the 1.5x goal
    _deployment_rows(tmp_path, seconds)
    report = _demo_folder(tmp_path).read_text()
    assert report.count("it decodes 1.33x as fast (goal: at least 1.5x) — **missed**") == 2  # clips and recordings
    assert "(goal: no slower) — **met**" in report
