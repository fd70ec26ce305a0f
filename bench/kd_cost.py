"""Cost of a knowledge-distillation step vs a cross-entropy-only step of the same student.

    python bench/kd_cost.py [--preset whisper-base-random] [--student-layers 2] [--batch 2] [--steps 3]

The student is made from the teacher with `make_student` (encoder copied, frozen). Timed, on the
same batch: the CE-only student step (the baseline), the KD step with the shared encoder (the teacher
reads the student's encoder output), and the KD step with the teacher running its own encoder.
With --window-seconds N (e.g. 10), also a student with an N-s window (`make-student --window-seconds`), in
both of `model.distillation_teacher_window`'s modes: "student" (the teacher's decoder reads the short
window's encoder output) and "own" (the teacher's encoder runs on its 30-s window too).
Also the offline KD step (model.distillation_source=shards): the KL from the teacher's stored top-k (--topk, 64),
no teacher run; and with --memory, peak RSS of online KD (student + teacher in memory) against offline KD (the
student alone, top-k read from the batch), each in a fresh process.
Last line: ratio=<KD shared / CE-only>.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from mwc_dist.losses import distillation_loss
    from mwc_dist.models.build import materialize_preset
    from mwc_dist.models.student import make_student

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="whisper-base-random")
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--window-seconds", type=int, help="also time a student with this shorter window")
    parser.add_argument("--topk", type=int, default=64, help="k of the stored top-k for the offline KD step")
    parser.add_argument("--memory", action="store_true", help="peak RSS of online vs offline KD, fresh processes")
    parser.add_argument("--memory-child", choices=["prepare", "online", "offline"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args)
    if args.memory:
        return memory(args)
    from transformers import WhisperForConditionalGeneration

    teacher = (
        WhisperForConditionalGeneration.from_pretrained(materialize_preset(args.preset, 0)).eval().requires_grad_(False)
    )
    student, _ = make_student(teacher, args.student_layers)
    student.train().model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-5)
    torch.manual_seed(0)
    features, labels = torch.randn(args.batch, 80, 3000), torch.randint(0, 50000, (args.batch, 32))

    def ce_step():
        student(input_features=features, labels=labels).loss.backward()

    def kd_shared():
        with torch.no_grad():
            encoded = student.get_encoder()(features)
            t = teacher(encoder_outputs=encoded, labels=labels).logits
        s = student(encoder_outputs=encoded, labels=labels).logits
        distillation_loss(s, t, labels, 2.0, 0.5)[0].backward()

    def kd_separate():
        with torch.no_grad():
            t = teacher(input_features=features, labels=labels).logits
        s = student(input_features=features, labels=labels).logits
        distillation_loss(s, t, labels, 2.0, 0.5)[0].backward()

    from mwc_dist.losses import distillation_loss_stored

    with torch.no_grad():  # what `mwc pseudo-label --store-topk` would have stored for this batch
        stored_logp, stored_ids = torch.log_softmax(teacher(input_features=features, labels=labels).logits, -1).topk(
            args.topk, -1
        )
        stored_logp = stored_logp.half().float()

    def kd_stored():
        s = student(input_features=features, labels=labels).logits
        distillation_loss_stored(s, stored_ids, stored_logp, labels, 2.0, 0.5)[0].backward()

    steps = [
        ("ce_only", ce_step),
        ("kd_shared_encoder", kd_shared),
        ("kd_own_encoder", kd_separate),
        (f"kd_stored_top{args.topk}", kd_stored),
    ]
    if args.window_seconds:
        short, _ = make_student(teacher, args.student_layers, args.window_seconds)
        short.train().model.encoder.requires_grad_(False)
        short_features = features[:, :, : 100 * args.window_seconds]  # the same audio's first N seconds

        def kd_short(teacher_window: str):
            def step():
                with torch.no_grad():
                    encoded = short.get_encoder()(short_features)
                    teacher_in = (
                        {"encoder_outputs": encoded} if teacher_window == "student" else {"input_features": features}
                    )
                    t = teacher(**teacher_in, labels=labels).logits
                s = short(encoder_outputs=encoded, labels=labels).logits
                distillation_loss(s, t, labels, 2.0, 0.5)[0].backward()

            return step

        steps += [
            (f"kd_{args.window_seconds}s_student_window", kd_short("student")),
            (f"kd_{args.window_seconds}s_own_window", kd_short("own")),
        ]
    times = {}
    for i, (name, step) in enumerate(steps):  # steps[4:]: the shorter-window student
        step()  # warm-up
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        times[name] = (time.perf_counter() - start) / args.steps
        print(
            f"{name:<24} {times[name]:.3f} s/step  ({args.preset} teacher, {args.student_layers}-layer student, "
            f"batch {args.batch}, {args.window_seconds if i >= 4 else 30} s of audio per clip)"
        )
    print(f"without the shared encoder: {times['kd_own_encoder'] / times['ce_only']:.2f}x the CE-only step")
    offline = times[f"kd_stored_top{args.topk}"] / times["ce_only"]
    print(f"offline KD (stored top-{args.topk}): {offline:.2f}x the CE-only step")
    for name in [n for n, _ in steps[4:]]:
        print(f"{name}: {times[name] / times['ce_only']:.2f}x the CE-only step of the 30-s student")
    print("baseline: the CE-only step of the same student on the same batch, same run")
    print(f"ratio={times['kd_shared_encoder'] / times['ce_only']:.2f}")


def memory_child(args) -> None:
    """One configuration in this process: "prepare" writes the student and the batch's top-k to --work; "online"
    trains the student beside the teacher; "offline" trains the student from the stored top-k, no teacher built."""
    import resource

    import torch
    from transformers import WhisperForConditionalGeneration

    from mwc_dist.losses import distillation_loss, distillation_loss_stored
    from mwc_dist.models.build import materialize_preset
    from mwc_dist.models.student import make_student

    work = Path(args.work)
    if args.memory_child == "prepare":
        teacher = WhisperForConditionalGeneration.from_pretrained(materialize_preset(args.preset, 0)).eval()
        student, _ = make_student(teacher, args.student_layers)
        student.save_pretrained(work / "student")
        torch.manual_seed(0)
        features, labels = torch.randn(args.batch, 80, 3000), torch.randint(0, 50000, (args.batch, 32))
        with torch.no_grad():
            logp, ids = torch.log_softmax(teacher(input_features=features, labels=labels).logits, -1).topk(
                args.topk, -1
            )
        torch.save({"features": features, "labels": labels, "ids": ids, "logp": logp.half()}, work / "batch.pt")
        print(sum(p.numel() for p in teacher.parameters()), sum(p.numel() for p in student.parameters()))
        return
    batch = torch.load(work / "batch.pt")
    features, labels = batch["features"], batch["labels"]
    student = WhisperForConditionalGeneration.from_pretrained(work / "student")
    teacher = None
    if args.memory_child == "online":
        teacher = WhisperForConditionalGeneration.from_pretrained(materialize_preset(args.preset, 0)).eval()
    student.train().model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-5)
    for _ in range(args.steps):
        s = student(input_features=features, labels=labels).logits
        if teacher is None:
            loss = distillation_loss_stored(s, batch["ids"], batch["logp"].float(), labels, 2.0, 0.5)[0]
        else:
            with torch.no_grad():
                t = teacher(input_features=features, labels=labels).logits
            loss = distillation_loss(s, t, labels, 2.0, 0.5)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(args) -> None:
    """Peak RSS of online and offline KD training, each in a fresh process, on the same student and batch."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as work:

        def child(kind: str) -> list[int]:
            cmd = [sys.executable, __file__, "--memory-child", kind, "--work", work, "--preset", args.preset]
            cmd += ["--student-layers", str(args.student_layers), "--batch", str(args.batch)]
            cmd += ["--steps", str(args.steps), "--topk", str(args.topk)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return [int(x) for x in out.strip().splitlines()[-1].split()]  # the last line: libraries log above it

        teacher_n, student_n = child("prepare")
        online, offline = child("online")[0], child("offline")[0]
    print(f"teacher {teacher_n / 1e6:.1f} M parameters, student {student_n / 1e6:.1f} M ({teacher_n / student_n:.2f}x)")
    print(f"online KD peak RSS {online / 1024:.0f} MiB; offline KD (stored top-{args.topk}) {offline / 1024:.0f} MiB")
    print("baseline: online KD (the teacher in memory), same student, batch and steps, same run")
    print(f"memory_ratio={offline / online:.2f}")


if __name__ == "__main__":
    main()
