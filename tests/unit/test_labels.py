"""Whisper's training sequences: exact tokens with and without timestamps and a prompt; no loss on the prompt."""

import json

import pytest
import torch

from mwc_dist.data.labels import IGNORE, LabelPlan, build_sequence, plan_labels
from mwc_dist.data.stream import Tokenize
from mwc_dist.models.tokenizer import load_tokenizer

# OpenAI's multilingual ids (models/tokenizer.py)
EOT, SOT, ES, TRANSCRIBE, PREV, NOTIMESTAMPS, T0 = 50257, 50258, 50262, 50359, 50361, 50363, 50364
WINDOW = {
    "key": "talk-w0001",
    "text": "Hola mundo. Adiós.",
    "language": "es",
    "duration": 4.0,
    "segments": [{"start": 0.5, "end": 1.52, "text": "Hola mundo."}, {"start": 2.0, "end": 3.0, "text": "Adiós."}],
    "prev_text": "Antes de todo.",
}


@pytest.fixture(scope="module")
def tokenize():
    return Tokenize(load_tokenizer(), "es", "transcribe", max_tokens=448)


def _enc(tokenize, text):
    return tokenize.tokenizer.encode(" " + text, add_special_tokens=False)


def test_exact_sequences(tokenize):
    body = _enc(tokenize, "Hola mundo. Adiós.")
    plain = [ES, TRANSCRIBE, NOTIMESTAMPS, *body, EOT]
    assert build_sequence(tokenize, WINDOW, LabelPlan()) == ([SOT, *plain[:-1]], plain)
    seg1, seg2 = _enc(tokenize, "Hola mundo."), _enc(tokenize, "Adiós.")
    timed = [ES, TRANSCRIBE, T0 + 25, *seg1, T0 + 76, T0 + 100, *seg2, T0 + 150, EOT]
    assert build_sequence(tokenize, WINDOW, LabelPlan(timestamps=True)) == ([SOT, *timed[:-1]], timed)
    prompt = [PREV, *_enc(tokenize, "Antes de todo.")]
    inputs, labels = build_sequence(tokenize, WINDOW, LabelPlan(timestamps=True, prompt=True))
    assert inputs == [*prompt, SOT, *timed[:-1]]
    assert labels == [IGNORE] * len(prompt) + timed  # the prompt and the <|startoftranscript|> after it: no loss
    # a clip is one segment from 0 to its duration; no previous text: no prompt
    clip = {"key": "c", "text": "Hola.", "language": "es", "duration": 1.234}
    inputs, labels = build_sequence(tokenize, clip, LabelPlan(timestamps=True, prompt=True))
    assert labels == [ES, TRANSCRIBE, T0, *_enc(tokenize, "Hola."), T0 + 62, EOT] and inputs[0] == SOT


def test_prompt_cut_to_223_tokens_and_to_the_decoder(tokenize):
    long_prev = " ".join(["palabra"] * 400)
    window = WINDOW | {"prev_text": long_prev}
    inputs, labels = build_sequence(tokenize, window, LabelPlan(prompt=True))
    assert inputs[0] == PREV and inputs.index(SOT) == 224  # <|startofprev|> + the last 223 tokens
    tight = Tokenize(tokenize.tokenizer, "es", "transcribe", max_tokens=40)
    inputs, labels = build_sequence(tight, window, LabelPlan(prompt=True))
    assert len(inputs) <= 40 and inputs[0] == PREV and labels[-1] == EOT and IGNORE not in labels[inputs.index(SOT) :]


def test_no_loss_on_prompt_tokens(tokenize):
    """The model's loss equals the cross-entropy over the label positions only; with the mask broken it differs."""
    from mwc_dist.config import ModelConfig
    from mwc_dist.models.build import build_model

    model = build_model(ModelConfig(base_model="tiny-random"))[0].eval()
    inputs, labels = build_sequence(tokenize, WINDOW, LabelPlan(timestamps=True, prompt=True))
    features = torch.randn(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    ids, target = torch.tensor([inputs]), torch.tensor([labels])
    with torch.no_grad():
        out = model(input_features=features, decoder_input_ids=ids, labels=target)
        n_prompt = inputs.index(SOT)
        logits = out.logits[0, n_prompt:]
        by_hand = torch.nn.functional.cross_entropy(logits, target[0, n_prompt:])
        assert float(out.loss) == pytest.approx(float(by_hand), rel=1e-6)
        unmasked = torch.tensor([inputs[1:] + [labels[-1]]])  # the same sequence with the prompt's positions learned
        broken = model(input_features=features, decoder_input_ids=ids, labels=unmasked).loss
    assert abs(float(broken) - float(out.loss)) > 1e-3


def test_plans_drawn_per_seed_epoch_key():
    samples = [{"__key__": f"k{n}", "json": json.dumps({"text": "x"}).encode()} for n in range(2000)]

    def plans(seed, epoch):
        return [s["__label__"] for s in plan_labels(iter(samples), seed, epoch, 0.3, 0.6)]

    first = plans(1, 0)
    assert first == plans(1, 0) and first != plans(1, 1) and first != plans(2, 0)
    assert abs(sum(p.timestamps for p in first) / 2000 - 0.3) < 0.04
    assert abs(sum(p.prompt for p in first) / 2000 - 0.6) < 0.04
    assert plans(1, 0)[5:10] == [s["__label__"] for s in plan_labels(iter(samples[5:10]), 1, 0, 0.3, 0.6)]


def _long_stream(long_shards, tokenize, skip=0, p=(0.5, 0.5), workers=2, epoch=1):
    from mwc_dist.config import DataConfig
    from mwc_dist.data.stream import TrainStream, load_shard_set

    shards = load_shard_set(DataConfig(shard_dir=str(long_shards)), "train")
    return TrainStream(
        shards,
        tokenize,
        batch_size=2,
        seed=3,
        epoch=epoch,
        rank=0,
        world_size=1,
        num_workers=workers,
        shuffle_buffer=4,
        bucket_size=2,
        max_samples=16000 * 10,
        skip_items=skip,
        timestamp_probability=p[0],
        prev_probability=p[1],
    )


def _sequences(stream):
    """(keys, decoder inputs, labels) of every batch, in order (a worker's padding item as None)."""
    from mwc_dist.data.stream import build_train_loader

    loader = build_train_loader(stream)
    return [b and (tuple(b["keys"]), b["decoder_input_ids"].tolist(), b["labels"].tolist()) for b in loader]


def test_stream_trains_timestamps_and_prompts_where_asked(long_shards, tokenize):
    always = [b for b in _sequences(_long_stream(long_shards, tokenize, p=(1, 1))) if b]
    never = [b for b in _sequences(_long_stream(long_shards, tokenize, p=(0, 0))) if b]
    assert [k for k, _, _ in always] == [k for k, _, _ in never]  # the same batches, only the sequences differ
    rows = [row for keys, ids, labels in always for row in zip(keys, ids, labels)]
    first_windows = [k for k, _, _ in rows if k.endswith("-w0000")]
    assert 0 < len(first_windows) < len(rows)
    for key, ids, labels in rows:
        assert (ids[0] == PREV) == (not key.endswith("-w0000"))  # a prompt exactly where there is a previous text
        learned = [t for t in labels if t != IGNORE]
        assert NOTIMESTAMPS not in learned and sum(t >= T0 for t in learned) >= 2 and PREV not in learned
    for _, ids, labels in never:
        assert all(row[0] == SOT and NOTIMESTAMPS in row for row in ids)
        assert all(t < T0 for row in labels for t in row)


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_with_timestamps_and_prompts_resumes_exactly(long_shards, tokenize, workers):
    full = _sequences(_long_stream(long_shards, tokenize, workers=workers))
    assert len([b for b in full if b]) >= 4
    drawn = {ids[0] == PREV for _, batch_ids, _ in filter(None, full) for ids in batch_ids}
    assert drawn == {True, False}  # at p = 0.5 both kinds occur
    for skip in range(len(full)):
        assert _sequences(_long_stream(long_shards, tokenize, skip=skip, workers=workers)) == full[skip:], skip
    assert _sequences(_long_stream(long_shards, tokenize, epoch=2, workers=workers)) != full


def test_kd_teacher_reads_the_same_decoder_input(tokenize):
    """With a teacher identical to the student the KL is 0 only if both decoders read the prompt."""
    import copy

    from accelerate import Accelerator

    from mwc_dist.config import ModelConfig, TrainConfig
    from mwc_dist.loop.losses import TrainLoss
    from mwc_dist.models.build import build_model

    model = build_model(ModelConfig(base_model="tiny-random"))[0].eval()
    loss = TrainLoss(ModelConfig(), TrainConfig(), Accelerator(cpu=True), model, copy.deepcopy(model), False)
    inputs, labels = build_sequence(tokenize, WINDOW, LabelPlan(timestamps=True, prompt=True))
    features = torch.randn(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    ids, target = torch.tensor([inputs]), torch.tensor([labels])
    with torch.no_grad():
        _, ce, kl = loss(features, target, None, ids)
        assert float(kl) == pytest.approx(0.0, abs=1e-7)
        assert float(ce) == pytest.approx(
            float(model(input_features=features, decoder_input_ids=ids, labels=target).loss)
        )
        _, ce_shifted, _ = loss(features, torch.tensor([labels[inputs.index(SOT) :]]), None, None)
    assert abs(float(ce_shifted) - float(ce)) > 1e-4  # without the prompt the decoder sees something else


def test_config_keys_reach_the_trainers_batches(long_shards, tmp_path):
    from tiny_run import trainer

    from mwc_dist.data.stream import build_train_loader

    def first_batches(*overrides):
        t = trainer(long_shards, tmp_path / "run", "data.num_workers=1", *overrides)
        return [b for b in build_train_loader(t.data.stream(0)) if b]

    on = first_batches("data.timestamp_probability=1", "data.condition_on_prev_probability=1")
    off = first_batches()
    prompts = sum(row[0] == PREV for b in on for row in b["decoder_input_ids"].tolist())
    assert prompts == sum(not k.endswith("-w0000") for b in on for k in b["keys"]) > 0
    assert all(sum(t >= T0 for t in row) >= 2 for b in on for row in b["labels"].tolist())
    assert not any(t >= T0 or t == PREV for b in off for row in b["decoder_input_ids"].tolist() for t in row)
