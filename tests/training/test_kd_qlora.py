"""Knowledge distillation and QLoRA on CPU with real bitsandbytes NF4 and PEFT."""

import json

import pytest
import torch
from tiny_run import tiny_model_30s, trainer

from mwc_dist.config import ModelConfig
from mwc_dist.losses import distillation_loss, kl_teacher_student
from mwc_dist.models.build import build_model, materialize_preset
from mwc_dist.models.student import make_student, make_student_folder, student_layer_ids


def test_kd_loss_equals_hand_computation_and_ignores_padding():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, -100], [3, -100, -100]])
    T, alpha = 2.0, 0.3
    total, ce, kl = distillation_loss(s, t, labels, T, alpha)
    positions = [(0, 0), (0, 1), (1, 0)]
    kls, ces = [], []
    for b, i in positions:
        p_t = torch.softmax(t[b, i] / T, -1)
        p_s = torch.softmax(s[b, i] / T, -1)
        kls.append(sum(p_t[v] * (torch.log(p_t[v]) - torch.log(p_s[v])) for v in range(5)))
        ces.append(-torch.log_softmax(s[b, i], -1)[labels[b, i]])
    assert kl == pytest.approx(float(sum(kls) / 3), rel=1e-5)
    assert ce == pytest.approx(float(sum(ces) / 3), rel=1e-5)
    assert total == pytest.approx(alpha * float(ce) + (1 - alpha) * T**2 * float(kl), rel=1e-5)
    # padded positions do not count, whatever their logits
    s2 = s.clone()
    s2[0, 2] += 100
    s2[1, 1:] -= 50
    assert distillation_loss(s2, t, labels, T, alpha)[0] == pytest.approx(float(total), rel=1e-6)
    assert kl_teacher_student(t, t, labels, T) == pytest.approx(0.0, abs=1e-6)


def test_teacher_gets_no_gradient():
    s = torch.randn(1, 2, 4, requires_grad=True)
    t = torch.randn(1, 2, 4, requires_grad=True)
    loss, _, _ = distillation_loss(s, t, torch.tensor([[0, 1]]), 2.0, 0.5)
    loss.backward()
    assert s.grad is not None and t.grad is None


def test_student_layers_evenly_spaced_first_and_last():
    assert student_layer_ids(6, 2) == [0, 5]
    assert student_layer_ids(32, 4) == [0, 10, 21, 31]
    assert student_layer_ids(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        student_layer_ids(2, 3)


def test_make_student_copies_exactly_the_expected_layers(tmp_path):
    from transformers import WhisperForConditionalGeneration

    teacher_dir = materialize_preset("tiny-random", seed=5)
    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir)
    deep = WhisperForConditionalGeneration(type(teacher.config)(**{**teacher.config.to_dict(), "decoder_layers": 5}))
    student, ids = make_student(deep, 3)
    assert ids == [0, 2, 4] and student.config.decoder_layers == 3
    sd, td = student.state_dict(), deep.state_dict()
    for k, v in sd.items():
        if k.startswith("model.decoder.layers."):
            i = int(k.split(".")[3])
            assert torch.equal(v, td[k.replace(f"layers.{i}.", f"layers.{ids[i]}.", 1)])
        elif k != "proj_out.weight":
            assert torch.equal(v, td[k]), k
    out, ids = make_student_folder(str(teacher_dir), 1, str(tmp_path / "student"))
    assert ids == [1] and json.loads((out / "config.json").read_text())["decoder_layers"] == 1
    assert (out / "tokenizer.json").is_file()


def test_qlora_has_4bit_layers_learns_saves_and_merges(tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel

    from mwc_dist.models.lora import check_adapter, load_quantized, merge_to_full

    cfg = ModelConfig(
        base_model="tiny-random",
        use_4bit_quantization=True,
        bnb_4bit_compute_dtype="float32",
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
    )
    model, _ = build_model(cfg, seed=1)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) >= 20
    assert model.peft_config["default"].target_modules == {"q_proj", "k_proj", "v_proj", "out_proj"}
    torch.manual_seed(0)
    features, labels = torch.randn(2, 80, 1000), torch.randint(0, 500, (2, 8))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(10):
        loss = model(input_features=features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    model.eval()
    with torch.no_grad():
        trained_logits = model(input_features=features, labels=labels).logits
    model.save_pretrained(tmp_path / "adapter")
    assert check_adapter(tmp_path / "adapter") > 0
    # reloads onto a fresh 4-bit base with the same behaviour
    base = load_quantized(model.mwc_base_dir, cfg, "cpu")
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_features=features, labels=labels).logits, trained_logits, atol=1e-5)
    # the merged float32 export reproduces the 4-bit model + adapter
    merged = merge_to_full(model.mwc_base_dir, tmp_path / "adapter", cfg, quantized=True).eval()
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    with torch.no_grad():
        merged_logits = merged(input_features=features, labels=labels).logits
    # stated tolerance: 5e-3 on logits (4-bit kernels vs dequantised float32 matmuls), same argmax everywhere
    assert (merged_logits - trained_logits).abs().max() < 5e-3
    assert torch.equal(merged_logits.argmax(-1), trained_logits.argmax(-1))
    with torch.no_grad():  # and the adapter matters far more than that tolerance
        untrained = load_quantized(model.mwc_base_dir, cfg, "cpu").eval()(input_features=features, labels=labels).logits
    assert (untrained - trained_logits).abs().max() > 20 * 5e-3
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text("{}")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, empty / "adapter_model.safetensors")
    with pytest.raises(RuntimeError, match="no LoRA tensors"):
        check_adapter(empty)


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_lora_encoder_layers_puts_adapters_in_the_top_layers_only(encoder_layers):
    cfg = ModelConfig(
        base_model="tiny-random",
        use_4bit_quantization=True,
        bnb_4bit_compute_dtype="float32",
        lora_target_modules=["q_proj", "v_proj", "fc1"],
        lora_encoder_layers=encoder_layers,
    )
    model, _ = build_model(cfg, seed=1)
    total = model.config.encoder_layers
    adapted = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    encoder = {n for n in adapted if ".encoder." in n}
    expected_layers = set(range(total - encoder_layers, total))
    assert {int(n.split(".layers.")[1].split(".")[0]) for n in encoder} == expected_layers
    assert len(encoder) == 3 * encoder_layers
    assert len(adapted - encoder) == 3 * model.config.decoder_layers + 2 * model.config.decoder_layers  # + cross q, v
    # the backward pass reaches only the adapted layers: no gradient flows below them
    seen = []
    for n, layer in enumerate(model.get_encoder().layers):
        layer.register_forward_hook(lambda mod, inp, out, n=n: seen.append((n, out[0].requires_grad)))
    features, labels = torch.randn(2, 80, 1000), torch.randint(0, 500, (2, 8))
    model(input_features=features, labels=labels).loss.backward()
    assert [g for _, g in seen] == [n in expected_layers for n in range(total)]
    lora_b = {n: p.grad for n, p in model.named_parameters() if "lora_B" in n}  # lora_A's is 0 while B is 0
    assert len(lora_b) == len(adapted) and all(g is not None and g.abs().sum() > 0 for g in lora_b.values())


def _train(tmp_path, shards, *overrides):
    settings = ("train.per_device_train_batch_size=4", "train.eval_steps=-1", "checkpoint.save_strategy=no")
    t = trainer(shards, tmp_path, *settings, *overrides)
    t.train()
    return t, [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_student_moves_towards_its_teacher(tmp_path, demo_shards):
    teacher_dir = materialize_preset("tiny-random", seed=11)
    student_dir, _ = make_student_folder(str(teacher_dir), 1, str(tmp_path / "student"))
    trainer, rows = _train(
        tmp_path / "run",
        demo_shards,
        f"model.base_model={student_dir}",
        "model.use_distillation=true",
        f"model.teacher_model={teacher_dir}",
        "model.distillation_alpha=0.0",
        "model.distillation_temperature=2.0",
        "train.freeze_encoder=true",
        "train.max_steps=12",
        "train.learning_rate=3e-3",
        "train.warmup_steps=0",
    )
    assert trainer.share_encoder  # the frozen copied encoder runs once for both
    assert all(not p.requires_grad for p in trainer.teacher.parameters()) and not trainer.teacher.training
    kl = [r["kl"] for r in rows if "kl" in r]
    assert len(kl) == 12 and sum(kl[-3:]) / 3 < 0.7 * sum(kl[:3]) / 3


def _teacher_with_30s_window(tmp_path):
    return tiny_model_30s(tmp_path / "teacher30", seed=13)


def test_student_with_a_shorter_window(tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    teacher_dir, teacher = _teacher_with_30s_window(tmp_path)
    out, ids = make_student_folder(str(teacher_dir), 1, str(tmp_path / "student"), window_seconds=10)
    student = WhisperForConditionalGeneration.from_pretrained(out)
    assert student.config.max_source_positions == 500 and student.config.decoder_layers == 1
    positions = student.model.encoder.embed_positions.weight
    assert torch.equal(positions, teacher.model.encoder.embed_positions.weight[:500])
    assert torch.equal(student.model.encoder.layers[1].fc2.weight, teacher.model.encoder.layers[1].fc2.weight)
    fe = WhisperProcessor.from_pretrained(out).feature_extractor
    assert (fe.chunk_length, fe.n_samples, fe.nb_max_frames) == (10, 160000, 1000)
    info = json.loads((out / "STUDENT_OF.json").read_text())
    assert (info["window_seconds"], info["teacher_window_seconds"]) == (10, 30)
    ids = student.generate(input_features=torch.randn(1, 80, 1000), max_new_tokens=3)  # the 10-s window is its input
    assert ids.shape[0] == 1
    with pytest.raises(ValueError, match="1000"):  # and only that: the teacher's 30-s features are refused
        student.model.encoder(torch.randn(1, 80, 3000))
    for bad in (45, 7.5, 0):
        with pytest.raises(ValueError, match="window-seconds"):
            make_student(teacher, 1, bad)


@pytest.mark.parametrize("teacher_window", ["own", "student"])
def test_shorter_window_student_distils(tmp_path, demo_shards, teacher_window):
    """A 10-s student of a 30-s teacher: the teacher runs its own encoder on 30 s, or takes the student's output."""
    teacher_dir, _ = _teacher_with_30s_window(tmp_path)
    student_dir, _ = make_student_folder(str(teacher_dir), 1, str(tmp_path / "student"), window_seconds=10)
    trainer, rows = _train(
        tmp_path / "run",
        demo_shards,
        f"model.base_model={student_dir}",
        "model.use_distillation=true",
        f"model.teacher_model={teacher_dir}",
        f"model.distillation_teacher_window={teacher_window}",
        "model.distillation_alpha=0.0",
        "train.freeze_encoder=true",
        "train.max_steps=12",
        "train.learning_rate=3e-3",
        "train.warmup_steps=0",
    )
    assert trainer.share_encoder == (teacher_window == "student")
    assert (trainer.features.teacher_log_mel is None) == (teacher_window == "student")
    if trainer.features.teacher_log_mel is not None:
        assert (
            trainer.features.teacher_log_mel.num_samples == 30 * 16000
            and trainer.features.log_mel.num_samples == 10 * 16000
        )
    kl = [r["kl"] for r in rows if "kl" in r]
    assert len(kl) == 12 and sum(kl[-3:]) / 3 < 0.7 * sum(kl[:3]) / 3


def test_a_teacher_window_shorter_than_the_shards_is_refused(tmp_path, demo_shards):
    from transformers import WhisperForConditionalGeneration

    preset = materialize_preset("tiny-random", seed=14)
    small = WhisperForConditionalGeneration.from_pretrained(preset)
    short = WhisperForConditionalGeneration(
        type(small.config)(**{**small.config.to_dict(), "max_source_positions": 250})
    )
    short.save_pretrained(tmp_path / "teacher5")
    with pytest.raises(ValueError, match="the teacher's window is 5 s"):
        _train(
            tmp_path / "run",
            demo_shards,
            "model.base_model=tiny-random",
            "model.use_distillation=true",
            f"model.teacher_model={tmp_path / 'teacher5'}",
            "train.max_steps=1",
        )


def test_different_vocabularies_are_refused(tmp_path, demo_shards):
    from transformers import WhisperForConditionalGeneration

    teacher_dir = materialize_preset("tiny-random", seed=12)
    other = WhisperForConditionalGeneration.from_pretrained(teacher_dir)
    other.resize_token_embeddings(51864)
    other.save_pretrained(tmp_path / "teacher_en")
    with pytest.raises(ValueError, match="same tokenizer"):
        _train(
            tmp_path / "run",
            demo_shards,
            "model.base_model=tiny-random",
            "model.use_distillation=true",
            f"model.teacher_model={tmp_path / 'teacher_en'}",
            "train.max_steps=1",
        )
