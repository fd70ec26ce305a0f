"""Cost of a knowledge-distillation step vs a cross-entropy-only step of the same student.

    python bench/kd_cost.py [--preset whisper-base-random] [--student-layers 2] [--batch 2] [--steps 3]

The student is made from the teacher with `make_student` (encoder copied, frozen). Timed, on the
same batch: the CE-only student step (the baseline), the KD step with the shared encoder (the teacher
reads the student's encoder output), and the KD step with the teacher running its own encoder.
With --window-seconds N (e.g. 10), also a student with an N-s window (`make-student --window-seconds`), in
both of `model.distillation_teacher_window`'s modes: "student" (the teacher's decoder reads the short
window's encoder output) and "own" (the teacher's encoder runs on its 30-s window too).
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
    args = parser.parse_args()
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

    steps = [("ce_only", ce_step), ("kd_shared_encoder", kd_shared), ("kd_own_encoder", kd_separate)]
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
    for i, (name, step) in enumerate(steps):  # steps[3:]: the shorter-window student
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
            f"batch {args.batch}, {args.window_seconds if i >= 3 else 30} s of audio per clip)"
        )
    print(f"without the shared encoder: {times['kd_own_encoder'] / times['ce_only']:.2f}x the CE-only step")
    for name in [n for n, _ in steps[3:]]:
        print(f"{name}: {times[name] / times['ce_only']:.2f}x the CE-only step of the 30-s student")
    print("baseline: the CE-only step of the same student on the same batch, same run")
    print(f"ratio={times['kd_shared_encoder'] / times['ce_only']:.2f}")


if __name__ == "__main__":
    main()
