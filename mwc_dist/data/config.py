"""The ``data:`` section: where the audio comes from, how it is checked and sharded (``mwc shard``) and how
training reads it. Its valid values (source types, splits, Common Voice TSVs) are defined here, beside
data/sources.py and data/shard.py that use them, and checked by ``DataConfig.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mwc_dist.audio.decode import AUDIO_FORMATS, SAMPLE_RATE
from mwc_dist.languages import resolve_section_language

SOURCE_TYPES = ("auto", "huggingface", "folder", "csv", "json", "commonvoice", "nemo", "librispeech", "kaldi")
SPLITS = ("train", "validation", "test")
COMMONVOICE_TSVS = ("train", "dev", "test", "validated", "other", "invalidated")


@dataclass
class DataConfig:
    """Where the audio comes from and how it is checked and sharded (``mwc shard``)."""

    source: str = ""  # folder, CSV, JSON/JSONL manifest, save_to_disk folder or hub dataset name
    source_type: str = "auto"  # auto | huggingface | folder | csv | json | commonvoice | nemo | librispeech | kaldi
    # Common Voice: the release's TSVs to read (train, dev, test, validated, other, invalidated; the name -> split)
    commonvoice_splits: list[str] = field(default_factory=lambda: ["train", "dev", "test"])
    min_up_votes: int = 0  # Common Voice: rows with fewer up_votes are quarantined as below_min_up_votes
    kaldi_allow_pipes: bool = False  # Kaldi wav.scp entries "id cmd |" run the shell command (off: quarantined)
    hf_split: str = "train"  # split of a Hugging Face DatasetDict
    hf_config: str | None = None  # hub dataset configuration name
    audio_column: str = (
        "audio"  # the audio column of a CSV/JSON manifest or a Hugging Face dataset (a path, bytes or a decoded array)
    )
    text_column: str = "text"  # the transcript column
    language_column: str = "language"  # each row's language (a code or a name); missing: data.language
    speaker_column: str = "speaker"  # the speaker (kept in the shards; split by hash keeps a speaker in one split)
    split_column: str = "split"  # rows that name a split keep it; the rest are split by hash
    id_column: str = "id"  # optional explicit item key (HF datasets, manifests)
    formats: list[str] = field(default_factory=lambda: list(AUDIO_FORMATS))  # folder scan filter
    language: str | None = None  # default language for items that name none
    sample_rate: int = SAMPLE_RATE  # Whisper's; anything else is rejected
    normalize: bool = True  # peak-normalise each clip to -1 dBFS
    min_duration_seconds: float = 0.5  # shorter clips are quarantined (too_short)
    max_duration_seconds: float = 30.0  # longer clips are quarantined (too_long); at most the model's window
    # longest transcript in Whisper tokens, prompt and end-of-text included (the decoder's max_target_positions);
    # longer ones are quarantined as too_many_tokens. 0: no check
    max_label_tokens: int = 448
    # audio without a transcript (audio-only folders, manifests without a text column, empty rows) is sharded with
    # an empty text instead of quarantined: for `mwc pseudo-label`; training on its references is refused
    allow_missing_text: bool = False
    train_split_ratio: float = (
        0.9  # rows without a split go to train / validation / test by a hash of their key, in these shares
    )
    validation_split_ratio: float = 0.1  # the validation share of those rows
    test_split_ratio: float = 0.0  # the test share of those rows
    shard_dir: str = (
        "shards"  # where `mwc shard` writes, and training and evaluation read, <split>.manifest.json and its tars
    )
    shard_samples: int = 1000  # items per shard (the unit of resume and of job splitting)
    # > 0: the train split in a multiple of shard_for_world_size x num_workers shards (of at most shard_samples,
    # evenly filled), so each rank and loader worker of that many processes reads shards of its own
    shard_for_world_size: int = 0
    shard_audio_format: str = "flac"  # flac (16-bit, lossless container) | wav (float32)
    shard_workers: int = 0  # decode processes for `mwc shard`; 0 = all cores
    num_workers: int = 2  # DataLoader workers per rank when training
    train_shards: str | None = None  # paths/brace patterns/pipe: URLs ("::"-separated); default: shard_dir's manifest
    eval_shards: str | None = None  # as train_shards, for the evaluation split (data.eval_split)
    eval_split: str = "validation"  # which split of shard_dir evaluation reads
    # the training text: the reference (text), or a teacher's pseudo-label (teacher_text, from `mwc pseudo-label`),
    # kept only where its quality passes: WER vs the reference, mean token log-prob, gzip compression ratio
    text_field: str = "text"
    pseudo_max_wer: float = (
        0.1  # the pseudo-label filter (data.text_field=teacher_text): at most this WER against the reference
    )
    pseudo_min_avg_logprob: float = -1.0  # at least this mean token log-probability
    pseudo_max_compression_ratio: float = 2.4  # at most this gzip compression ratio (a loop compresses well)
    # join consecutive clips (and transcripts) up to the model's window, in one language and within the decoder
    pack_to_window: bool = False
    # Whisper's training sequences (data/labels.py), drawn per (seed, epoch, sample): the share of samples trained
    # with timestamp tokens (<|t0|> text <|t1|> per segment), and the share trained with the previous window's text
    # (long recordings' windows have one; clips none) as the <|startofprev|> prompt (given, never learned)
    timestamp_probability: float = 0.0
    condition_on_prev_probability: float = 0.0  # see timestamp_probability
    # endless training streams (data/mix.py; train.max_steps sets the length): shards drawn with replacement from
    # data.shard_dir's train split (resampled: true), or from several shard folders' train splits, each sample's
    # folder drawn with p_i ~ (mix_weights[i] or its sample count) ** (1 / mix_temperature)
    resampled: bool = False  # an endless stream over data.shard_dir's train split, shards drawn with replacement
    mix_shard_dirs: list[str] = field(default_factory=list)  # shard folders whose train splits are mixed (endless)
    mix_weights: list[float] = field(default_factory=list)  # [] = each folder's sample count
    mix_temperature: float = 1.0  # > 1 flattens toward uniform (multilingual ASR's temperature sampling)

    def validate(self, problems: list[str]) -> None:
        """Append every problem of this section to ``problems``, each naming its key (``language`` becomes a code)."""
        resolve_section_language(self, "data", problems)
        if self.source_type not in SOURCE_TYPES:
            problems.append(f"data.source_type: must be one of {', '.join(SOURCE_TYPES)}; got {self.source_type!r}")
        bad_tsvs = [t for t in self.commonvoice_splits if t not in COMMONVOICE_TSVS]
        if bad_tsvs or not self.commonvoice_splits:
            problems.append(
                f"data.commonvoice_splits: some of {', '.join(COMMONVOICE_TSVS)}; got {self.commonvoice_splits}"
            )
        if self.min_up_votes < 0:
            problems.append(f"data.min_up_votes: a count >= 0; got {self.min_up_votes}")
        if self.sample_rate != SAMPLE_RATE:
            problems.append(f"data.sample_rate: Whisper takes {SAMPLE_RATE} Hz audio; got {self.sample_rate}")
        if self.max_label_tokens < 0 or 0 < self.max_label_tokens < 8:
            problems.append(
                f"data.max_label_tokens: 0 (no check) or at least 8 (Whisper's prompt alone is 4 tokens); "
                f"got {self.max_label_tokens}"
            )
        if self.min_duration_seconds < 0 or self.max_duration_seconds <= self.min_duration_seconds:
            problems.append(
                "data.min_duration_seconds / data.max_duration_seconds: need 0 <= min < max; "
                f"got {self.min_duration_seconds} / {self.max_duration_seconds}"
            )
        ratios = (self.train_split_ratio, self.validation_split_ratio, self.test_split_ratio)
        if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            problems.append(
                "data.train_split_ratio + validation_split_ratio + test_split_ratio must be >= 0 and sum to 1; "
                f"got {ratios[0]} + {ratios[1]} + {ratios[2]} = {sum(ratios):g}"
            )
        bad_formats = [f for f in self.formats if f.lower().lstrip(".") not in AUDIO_FORMATS]
        if bad_formats:
            problems.append(f"data.formats: unsupported {bad_formats}; supported: {', '.join(AUDIO_FORMATS)}")
        if self.shard_for_world_size < 0:
            problems.append(
                f"data.shard_for_world_size: 0 (off) or the planned process count; got {self.shard_for_world_size}"
            )
        if self.shard_samples < 1:
            problems.append(f"data.shard_samples: must be >= 1; got {self.shard_samples}")
        if self.shard_audio_format not in ("flac", "wav"):
            problems.append(f"data.shard_audio_format: must be flac or wav; got {self.shard_audio_format!r}")
        for key in ("timestamp_probability", "condition_on_prev_probability"):
            if not 0 <= getattr(self, key) <= 1:
                problems.append(f"data.{key}: a probability in [0, 1]; got {getattr(self, key)}")
        if self.text_field not in ("text", "teacher_text"):
            problems.append(
                f"data.text_field: text (the reference) or teacher_text (pseudo-labels); got {self.text_field!r}"
            )
        if self.mix_weights and len(self.mix_weights) != len(self.mix_shard_dirs):
            problems.append(
                f"data.mix_weights: one weight per folder of data.mix_shard_dirs ({len(self.mix_shard_dirs)}); "
                f"got {len(self.mix_weights)}"
            )
        if any(w <= 0 for w in self.mix_weights) or self.mix_temperature <= 0:
            problems.append(
                f"data.mix_weights and data.mix_temperature must be > 0; got {self.mix_weights}, {self.mix_temperature}"
            )
        if self.eval_split not in SPLITS:
            problems.append(f"data.eval_split: must be one of {', '.join(SPLITS)}; got {self.eval_split!r}")
