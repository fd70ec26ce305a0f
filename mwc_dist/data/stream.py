"""Stream shards into training batches: equal batches on every rank, exactly resumable.

Training pipeline (one per rank; each DataLoader worker runs it on its own shards)::

    shard list -> shuffle shards (seed + epoch) -> split by rank -> split by worker -> read tar samples
    -> pseudo-label filter -> this worker's part of a shared shard (fewer shards than ranks x workers)
    -> the sample stages (data/stages.py: shuffle buffer (seed, epoch, rank, worker) -> augmentation plan
       -> packing -> label plan -> duration buckets -> batches)
    -> skip what a resumed run already consumed -> decode audio -> tokenise -> collate

Sample counts per shard come from the manifest, so every rank knows, before reading a byte, how many
full batches every worker of every rank will produce. The epoch length is the minimum over ranks:
no rank waits in an all-reduce for a rank that ran dry (WebDataset's DDP hang). Each worker pads its
stream with ``None`` up to the longest worker of its rank, so the DataLoader's round robin is regular
and the position "items taken from the loader" maps to an exact per-worker skip on resume. Batches are
skipped before audio is decoded. Resuming at a different world size restarts the interrupted epoch's
data order from its beginning (the step count and schedule continue).

Evaluation reads the validation shards in order; sample ``i`` goes to rank ``i % world_size``, so each
sample is evaluated exactly once.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from mwc_dist.audio.decode import SAMPLE_RATE
from mwc_dist.data.config import DataConfig
from mwc_dist.data.labels import MAX_PROMPT_TOKENS, batch_sequences, timestamp_index
from mwc_dist.data.pack import num_members
from mwc_dist.data.stages import Draw, Stages, logical_worker, resume_skip
from mwc_dist.data.topk import stored_topk
from mwc_dist.models.tokenizer import is_multilingual


@dataclass
class ShardSet:
    urls: list[str]
    counts: list[int]  # samples per shard
    max_seconds: float | None = None  # the longest clip the shards may hold (manifest's config)
    without_text: int = 0  # samples sharded without a transcript (data.allow_missing_text)
    metas: list[list[tuple[str, bytes]]] | None = None  # (key, json) of every sample, for packing's plan
    # fewer shards than ranks x workers (a small corpus): entry i reads only its part (j, m) of its shard, the
    # samples whose index (after the pseudo-label filter) is j mod m; None: every entry reads its whole shard
    parts: list[tuple[int, int]] | None = None

    def with_metas(self) -> ShardSet:
        """The same set with every sample's key and json read (one pass over the shards, no audio decoded)."""
        metas = [[(s["__key__"], s["json"]) for s in tar_samples([u])] for u in self.urls]
        return dataclasses.replace(self, metas=metas)

    def split_within(self, slots: int) -> ShardSet:
        """Each shard as m parts, m the smallest making the parts a multiple of ``slots`` (ranks x workers), so that
        every slot reads the same number of parts; each part's count is known from the shard's."""
        m = slots // math.gcd(len(self.urls), slots)
        index = [(i, j) for i in range(len(self.urls)) for j in range(m)]
        return dataclasses.replace(
            self,
            urls=[self.urls[i] for i, _ in index],
            counts=[max(0, (self.counts[i] - j + m - 1) // m) for i, j in index],
            metas=[self.metas[i] for i, _ in index] if self.metas is not None else None,
            parts=[(j, m) for _, j in index],
        )

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


def tar_samples(urls: list[str]) -> Iterator[dict[str, Any]]:
    """The raw samples of these shards in order (WebDataset's tar reader: local paths and pipe: URLs)."""
    import webdataset as wds

    return wds.tarfile_to_samples()(iter([{"url": u} for u in urls]))


def _count_samples(url: str) -> int:
    return sum(1 for _ in tar_samples([url]))


def load_shard_set(cfg: DataConfig, split: str) -> ShardSet:
    """Shards of ``split``: ``data.<split>_shards`` (paths, brace patterns, pipe: URLs) or the manifest in
    ``data.shard_dir``."""
    from braceexpand import braceexpand

    pattern = cfg.train_shards if split == "train" else cfg.eval_shards
    if not pattern:
        return shard_folder(cfg.shard_dir, split)
    manifest = _manifest(cfg.shard_dir, split)
    max_seconds = manifest["config"]["max_duration_seconds"] if manifest else None
    urls = [u for part in pattern.split("::") for u in braceexpand(part)]
    known = {s["shard"]: s["num_samples"] for s in manifest["shards"]} if manifest else {}
    counts = [known.get(Path(u.split()[-1]).name) if not u.startswith("pipe:") else None for u in urls]
    counts = [c if c is not None else _count_samples(u) for c, u in zip(counts, urls)]  # one pass if no manifest
    return ShardSet(urls, counts, max_seconds)


def shard_folder(shard_dir: str | Path, split: str) -> ShardSet:
    """The shards of ``split`` that ``<shard_dir>/<split>.manifest.json`` lists (what `mwc shard` writes)."""
    manifest = _manifest(shard_dir, split)
    if manifest is None:
        key = "train" if split == "train" else "eval"
        raise ValueError(
            f"no shards for split {split!r}: {Path(shard_dir) / f'{split}.manifest.json'} does not exist. Run "
            f"`mwc shard --out {shard_dir}` or set data.shard_dir / data.{key}_shards"
        )
    urls = [str(Path(shard_dir) / s["shard"]) for s in manifest["shards"]]
    counts = [s["num_samples"] for s in manifest["shards"]]
    max_seconds = manifest["config"]["max_duration_seconds"]
    return ShardSet(urls, counts, max_seconds, without_text=manifest.get("without_text", 0))


def _manifest(shard_dir: str | Path, split: str) -> dict | None:
    path = Path(shard_dir) / f"{split}.manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ------------------------------------------------------------------------------------------ batches
class Tokenize:
    """Text -> Whisper labels: <|lang|><|task|><|notimestamps|> text <|endoftext|> (the model prepends the decoder
    start).

    English-only models: <|notimestamps|> text <|endoftext|>.
    """

    def __init__(self, tokenizer, language: str | None, task: str, max_tokens: int = 0):
        self.tokenizer = tokenizer
        self.language, self.task = language, task
        self.max_tokens = (
            max_tokens  # the decoder's max_target_positions: a longer label (+ the decoder start) is ignored
        )
        ids = tokenizer.convert_tokens_to_ids
        self.task_id, self.notimestamps, self.eot = ids(f"<|{task}|>"), ids("<|notimestamps|>"), ids("<|endoftext|>")
        self.sot, self.prev = ids("<|startoftranscript|>"), ids("<|startofprev|>")
        begin = ids("<|0.00|>")  # Whisper's first timestamp token; a tokenizer without them cannot train timestamps
        self.timestamp_begin = None if begin in (None, tokenizer.unk_token_id) else begin
        self.multilingual = is_multilingual(tokenizer)

    def language_id(self, language: str | None) -> list[int]:
        from mwc_dist.languages import resolve_language

        language = language or self.language
        if language is None:
            return []
        code = resolve_language(language)
        token_id = self.tokenizer.convert_tokens_to_ids(f"<|{code}|>")
        if token_id == self.tokenizer.unk_token_id or token_id is None:
            raise ValueError(f"language {language!r} has no Whisper language token")
        return [token_id]

    def __call__(self, text: str, language: str | None = None) -> list[int]:
        body = self.tokenizer.encode(" " + text.strip(), add_special_tokens=False)
        if not self.multilingual:
            return [self.notimestamps] + body + [self.eot]
        return self.language_id(language) + [self.task_id, self.notimestamps] + body + [self.eot]

    def timed(self, segments: list[dict], language: str | None = None) -> list[int] | None:
        """The label with timestamps (data/labels.py): ``<|start|> text <|end|>`` per segment, no <|notimestamps|>;
        None when the tokenizer has no timestamp tokens."""
        if self.timestamp_begin is None:
            return None
        body = []
        for seg in segments:
            text = self.tokenizer.encode(" " + seg["text"].strip(), add_special_tokens=False)
            body += [self.timestamp_begin + timestamp_index(seg["start"]), *text]
            body.append(self.timestamp_begin + timestamp_index(seg["end"]))
        prefix = self.language_id(language) + [self.task_id] if self.multilingual else []
        return prefix + body + [self.eot]

    def prompt(self, text: str, room: int) -> list[int]:
        """``<|startofprev|>`` and the last tokens of the previous text: at most 223 of them, and at most ``room``
        positions in all; [] when there is no text or no room."""
        ids = self.tokenizer.encode(" " + text.strip(), add_special_tokens=False) if text.strip() else []
        keep = min(MAX_PROMPT_TOKENS, room - 1, len(ids))
        return [self.prev] + ids[len(ids) - keep :] if keep > 0 else []

    def room(self, label_ids: list[int]) -> int:
        """Decoder positions left for a prompt before this label (all of a prompt's when there is no limit)."""
        return self.max_tokens - self.decoder_length(label_ids) if self.max_tokens else 1 + MAX_PROMPT_TOKENS

    @staticmethod
    def decoder_length(label_ids: list[int]) -> int:
        """Positions a label takes in the decoder: the decoder start the model prepends, then the label."""
        return 1 + len(label_ids)

    def fits(self, label_ids: list[int]) -> bool:
        """Whether the decoder (``max_tokens`` positions; 0: no limit) holds the label."""
        return not self.max_tokens or self.decoder_length(label_ids) <= self.max_tokens


def decode_flac(payload: bytes) -> np.ndarray:
    """A shard's audio as float32 in [-1, 1]."""
    return _decode(payload, "float32")


def first_clips(shard_dir: str | Path, split: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` clips of a shard split in shard order: ``key``, ``wave`` (float32), ``text``,
    ``language``; for parity checks and evaluations outside the training stream."""
    clips = []
    for sample in tar_samples(shard_folder(shard_dir, split).urls):
        meta = json.loads(sample["json"])
        wave = decode_flac(sample["flac"])
        clips.append({"key": sample["__key__"], "wave": wave, "text": meta["text"], "language": meta.get("language")})
        if len(clips) == limit:
            break
    return clips


def _decode(payload: bytes, dtype: str) -> np.ndarray:
    import soundfile as sf

    wave, _ = sf.read(io.BytesIO(payload), dtype=dtype)
    return wave


def collate(samples: list[dict[str, Any]], tokenize: Tokenize, max_samples: int, augment=None) -> dict[str, Any]:
    """Decode and pad one batch: audio [B, N] (+ lengths), decoder_input_ids and labels [B, L] (labels -100 padded).

    FLAC shards hold 16-bit PCM: the batch stays int16 (exact, half the bytes through the loader's worker
    pipes and to the device; LogMel scales it by 1/32768, as a float decode would). WAV shards are float32.
    With ``augment`` (audio/augment.py; training only) each sample's planned speed and noise are applied to
    its float32 decode, and the batch says what was done (``speeds``, ``snr_db``).
    """
    first = samples[0].get("__members__", samples)[0]
    int16 = "flac" in first and augment is None
    waves = [_wave(s, int16, augment)[:max_samples] for s in samples]
    metas = [json.loads(s["json"]) for s in samples]
    audio = torch.zeros(len(waves), max(len(w) for w in waves), dtype=torch.int16 if int16 else torch.float32)
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(w)
    # decoder inputs and labels (data/labels.py: timestamps and prompts where the stream planned them); a label the
    # decoder cannot hold (shards made without data.max_label_tokens) is all -100, so it adds no loss, and counted
    sequences = batch_sequences(samples, metas, tokenize, pad_id=tokenize.eot)
    topk = stored_topk(samples, sequences["labels"])  # offline distillation (data/topk.py), when the shards hold it
    return (
        {
            "audio": audio,
            "audio_lengths": torch.tensor([len(w) for w in waves]),
            **sequences,
            "keys": [m["key"] for m in metas],
            "texts": [m["text"] for m in metas],
            "languages": [m.get("language") for m in metas],
            "seconds": float(sum(len(w) for w in waves)) / SAMPLE_RATE,
        }
        | _augmented(samples, augment)
        | ({"teacher_topk": topk} if topk is not None else {})
    )


def _wave(sample: dict[str, Any], int16: bool, augment) -> np.ndarray:
    """One sample's audio, augmented as planned; a pack (data/pack.py): its members', one after the other."""
    if "__members__" in sample:
        return np.concatenate([_wave(m, int16, augment) for m in sample["__members__"]])
    wave = _decode(sample["flac"] if "flac" in sample else sample["wav"], "int16" if int16 else "float32")
    return augment.apply(wave, sample["__plan__"]) if augment is not None else wave


def _augmented(samples: list[dict[str, Any]], augment) -> dict[str, Any]:
    if augment is None:
        return {}
    plans = [s.get("__plan__") for s in samples]  # a pack has one per member
    return {"speeds": [p and p.speed for p in plans], "snr_db": [p and p.snr_db for p in plans]}


# ------------------------------------------------------------------------------------------- train
class TrainStream(IterableDataset):
    """One rank's training batches for one epoch (see the module docstring)."""

    def __init__(
        self,
        shards: ShardSet,
        tokenize: Tokenize,
        *,
        epoch: int,
        rank: int,
        world_size: int,
        num_workers: int,
        skip_items: int = 0,
        select=None,
        **stages,
    ):
        """``stages``: the sample stages' settings (data/stages.py: batch_size, bucket_size, shuffle_buffer,
        max_samples, seed, augment, pack, timestamp_probability, prev_probability)."""
        self.shards, self.tokenize, self.stages = shards, tokenize, Stages(tokenize, **stages)
        self.epoch, self.rank, self.world_size, self.num_workers = epoch, rank, world_size, max(1, num_workers)
        self.skip_items, self.select = skip_items, select

    # -- the plan, computable on every rank from the manifest counts alone
    def shard_order(self) -> list[int]:
        order = list(range(len(self.shards.urls)))
        random.Random(self.stages.seed * 1_000_003 + self.epoch).shuffle(order)  # same on every rank
        return order

    def worker_shards(self, rank: int, worker: int) -> list[int]:
        return self.shard_order()[rank :: self.world_size][worker :: self.num_workers]

    def worker_batches(self, rank: int) -> list[int]:
        if self.stages.pack:  # how many packs depends on the order and the durations: run the stages on the metadata
            return [sum(1 for _ in self._batches(self._standins(rank, w), rank, w)) for w in range(self.num_workers)]
        return [
            sum(self.shards.counts[i] for i in self.worker_shards(rank, w)) // self.stages.batch_size
            for w in range(self.num_workers)
        ]

    def steps_per_epoch(self) -> int:
        """Full batches every rank can produce this epoch: the minimum over ranks."""
        return min(sum(self.worker_batches(r)) for r in range(self.world_size))

    def _batches(self, samples: Iterator[dict], rank: int, worker: int) -> Iterator[list[dict]]:
        return self.stages.batches(samples, Draw.of_epoch(self.stages.seed, self.epoch, rank, worker))

    def used_samples(self, rank: int, items: int) -> int:
        """Samples (pack members counted) in rank's first ``items`` loader items: the round robin over its workers."""
        sizes = [
            [sum(num_members(s) for s in batch) for batch in self._batches(self._standins(rank, w), rank, w)]
            for w in range(self.num_workers)
        ]
        order = [w_sizes[n] if n < len(w_sizes) else 0 for n in range(max(map(len, sizes))) for w_sizes in sizes]
        return sum(order[:items])

    def left_out(self, items: int) -> int:
        """Samples the epoch leaves out when every rank takes ``items`` loader items: partial batches, the surplus of
        ranks or workers whose shards hold more, an incomplete last accumulation window."""
        if self.stages.pack:  # a batch holds packs of several samples: count them in the plan
            return self.shards.num_samples - sum(self.used_samples(r, items) for r in range(self.world_size))
        return self.shards.num_samples - items * self.stages.batch_size * self.world_size

    def describe(self, steps: int, left_out: int) -> str:
        return f"epoch {self.epoch}: {steps} steps; {left_out} samples left out to keep the ranks in step"

    def _standins(self, rank: int, worker: int) -> Iterator[dict]:
        """The worker's samples without their audio (ShardSet.metas), for planning."""
        for i in self.worker_shards(rank, worker):
            yield from self._shard_samples(i, ({"__key__": key, "json": meta} for key, meta in self.shards.metas[i]))

    def _worker_samples(self, worker: int) -> Iterator[dict]:
        """The worker's samples, shard by shard (shuffled, split by rank and worker: worker_shards)."""
        for i in self.worker_shards(self.rank, worker):
            yield from self._shard_samples(i, tar_samples([self.shards.urls[i]]))

    def _shard_samples(self, i: int, samples: Iterator[dict]) -> Iterator[dict]:
        """One shard's samples -> the pseudo-labels that pass the quality filter (data/pseudo.py) -> its part."""
        if self.select is not None:
            samples = self.select(samples)
        if self.shards.parts is not None:  # a small corpus: this entry's share of a shard others read too
            j, m = self.shards.parts[i]
            samples = (s for n, s in enumerate(samples) if n % m == j)
        return samples

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        worker = logical_worker(self.skip_items, self.num_workers)
        # shard list (shuffled, split by rank and worker) -> tar samples -> ... -> batches (still undecoded)
        batches = self._batches(self._worker_samples(worker), self.rank, worker)
        # -> pad to the longest worker of this rank, so the loader's round robin stays regular
        target = max(self.worker_batches(self.rank))
        n = 0
        skip = resume_skip(self.skip_items, worker, self.num_workers)
        for batch in batches:
            if n == target:
                break
            n += 1
            if n > skip:  # -> skip what was consumed before a resume, before decoding
                yield collate(batch, self.tokenize, self.stages.max_samples, self.stages.augment)  # -> decode, collate
        for _ in range(n, target):
            n += 1
            if n > skip:
                yield None


def build_train_loader(stream: TrainStream) -> DataLoader:
    workers = stream.num_workers if stream.num_workers > 1 else 0
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


def _identity(x):
    return x


# -------------------------------------------------------------------------------------------- eval
def eval_batches(
    shards: ShardSet,
    tokenize: Tokenize,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    max_samples: int,
    limit: int = 0,
) -> Iterator[dict[str, Any]]:
    """This rank's share of the eval samples (sample i -> rank i % world), in order, batched."""
    samples = tar_samples(shards.urls)
    mine: list[dict] = []
    for index, sample in enumerate(samples):
        if limit and index >= limit:
            break
        if index % world_size == rank:
            mine.append(sample)
            if len(mine) == batch_size:
                yield collate(mine, tokenize, max_samples)
                mine = []
    if mine:
        yield collate(mine, tokenize, max_samples)
