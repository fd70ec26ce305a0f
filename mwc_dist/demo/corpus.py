"""``mwc demo-data``: a real (synthetic) speech corpus from espeak-ng, in all seven formats.

Sentences come from a small seeded grammar (Spanish by default, English optional); each is spoken by
espeak-ng with a voice, variant, speed and pitch, and written as WAV, MP3, FLAC, OGG/Vorbis, Opus,
M4A, AAC or WMA, some resampled to 44.1 kHz stereo or 48 kHz. ``metadata.csv`` lists every file with
its text, language, speaker and, for held-out rows, ``split=test``: test sentences and test voices
never occur in the other rows, so a test WER measures generalisation, not memory.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GRAMMAR = {
    "es": {
        "subject": [
            "mi hermano",
            "la profesora",
            "el médico",
            "nuestra vecina",
            "el niño",
            "la abuela",
            "un amigo",
            "el cocinero",
            "la directora",
            "mi padre",
            "la enfermera",
            "el panadero",
            "una estudiante",
            "el conductor",
            "mi tía",
            "el alcalde",
            "la pintora",
            "el cartero",
            "mi prima",
            "el músico",
        ],
        "verb": [
            "compra",
            "lee",
            "prepara",
            "busca",
            "lava",
            "vende",
            "pinta",
            "abre",
            "cierra",
            "mira",
            "recoge",
            "trae",
            "guarda",
            "necesita",
            "encuentra",
            "lleva",
            "pide",
            "limpia",
            "escribe",
            "rompe",
        ],
        "object": [
            "una carta larga",
            "el pan caliente",
            "la puerta verde",
            "un libro nuevo",
            "las manzanas rojas",
            "el coche viejo",
            "una mesa pequeña",
            "los zapatos negros",
            "la ventana grande",
            "un vaso de agua",
            "el periódico",
            "una caja de madera",
            "las llaves",
            "un regalo bonito",
            "la camisa blanca",
            "el mapa de la ciudad",
            "una bicicleta azul",
            "la maleta",
            "los platos sucios",
            "un cuadro antiguo",
        ],
        "tail": [
            "en la cocina",
            "por la mañana",
            "antes de cenar",
            "cerca del mercado",
            "todos los días",
            "en el jardín",
            "después de la clase",
            "con mucho cuidado",
            "sin decir nada",
            "durante la fiesta",
            "en la estación",
            "al lado del río",
            "cada domingo",
            "en la oficina",
            "por la tarde",
            "junto a la iglesia",
            "en el parque",
            "a las ocho",
            "con su familia",
            "bajo la lluvia",
        ],
    },
    "en": {
        "subject": [
            "my brother",
            "the teacher",
            "the doctor",
            "our neighbour",
            "the little boy",
            "my grandmother",
            "a friend",
            "the cook",
            "the manager",
            "my father",
            "the nurse",
            "the baker",
            "a student",
            "the driver",
            "my aunt",
            "the mayor",
            "the painter",
            "the postman",
            "my cousin",
            "the singer",
        ],
        "verb": [
            "buys",
            "reads",
            "prepares",
            "looks for",
            "washes",
            "sells",
            "paints",
            "opens",
            "closes",
            "watches",
            "picks up",
            "brings",
            "keeps",
            "needs",
            "finds",
            "carries",
            "orders",
            "cleans",
            "writes",
            "breaks",
        ],
        "object": [
            "a long letter",
            "the warm bread",
            "the green door",
            "a new book",
            "the red apples",
            "the old car",
            "a small table",
            "the black shoes",
            "the big window",
            "a glass of water",
            "the newspaper",
            "a wooden box",
            "the keys",
            "a nice present",
            "the white shirt",
            "the city map",
            "a blue bicycle",
            "the suitcase",
            "the dirty plates",
            "an old painting",
        ],
        "tail": [
            "in the kitchen",
            "in the morning",
            "before dinner",
            "near the market",
            "every day",
            "in the garden",
            "after class",
            "very carefully",
            "without a word",
            "during the party",
            "at the station",
            "by the river",
            "every sunday",
            "at the office",
            "in the afternoon",
            "next to the church",
            "in the park",
            "at eight o'clock",
            "with the family",
            "in the rain",
        ],
    },
}
# (espeak voice, variant). The last two of each list speak only test sentences. es+f4 is left out: even
# pretrained whisper-base gets a WER over 1.5 on it (measured), so it would only add noise.
VOICES = {
    "es": [
        ("es", "m1"),
        ("es", "f1"),
        ("es-419", "m3"),
        ("es", "f2"),
        ("es-419", "f3"),
        ("es", "m2"),
        ("es-419", "m4"),
        ("es", "m5"),
        ("es", "f5"),
        ("es-419", "m7"),
    ],
    "en": [
        ("en-us", "m1"),
        ("en-gb", "f1"),
        ("en-us", "m3"),
        ("en-gb", "f2"),
        ("en-us", "f3"),
        ("en-gb", "m2"),
        ("en-us", "m4"),
        ("en-gb", "f5"),
        ("en-us", "f4"),
        ("en-gb", "m7"),
    ],
}
NUM_TEST_VOICES = 2
# extension cycle: all seven formats (OGG twice: Vorbis as .ogg, Opus as .opus)
FORMAT_CYCLE = ["wav", "mp3", "flac", "ogg", "m4a", "aac", "wma", "opus"]


@dataclass
class Utterance:
    file_name: str
    text: str
    language: str
    voice: str
    variant: str
    speed: int
    pitch: int
    fmt: str
    rate: int  # written sample rate (espeak speaks at 22050)
    channels: int
    split: str  # "" (train/validation, decided by `mwc shard`), "train", "validation" or "test"


def make_sentences(language: str, count: int, seed: int) -> list[str]:
    g = GRAMMAR[language]
    rng = random.Random(seed)
    total = len(g["subject"]) * len(g["verb"]) * len(g["object"]) * len(g["tail"])
    if count > total:
        raise ValueError(f"the {language} grammar makes at most {total} distinct sentences; asked for {count}")
    seen: set[str] = set()
    out = []
    while len(out) < count:
        words = [rng.choice(g[part]) for part in ("subject", "verb", "object", "tail")]
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + "."
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def plan_corpus(language: str, count: int, test_fraction: float, seed: int) -> list[Utterance]:
    rng = random.Random(seed + 1)
    sentences = make_sentences(language, count, seed)
    num_test = int(round(count * test_fraction))
    voices = VOICES[language]
    train_voices, test_voices = voices[:-NUM_TEST_VOICES], voices[-NUM_TEST_VOICES:]
    out = []
    for n, text in enumerate(sentences):
        is_test = n >= count - num_test  # the last sentences, never spoken in train
        folder = "test" if is_test else "train"
        voices_here = test_voices if is_test else train_voices
        out.append(_utterance(rng, n, text, language, voices_here, folder, "test" if is_test else ""))
    return out


def plan_quotes_corpus(count: int, test_fraction: float, seed: int) -> dict[str, list[Utterance]]:
    """The natural-text corpus (mwc_dist.demo.quotes): {"indomain": train/validation/test rows, "ood": test rows}.

    ``count`` in-domain utterances; test and validation each ``round(count * test_fraction)``, and as many
    out-of-domain test rows. Voices: training voices for train, two voices of its own for validation, the two test
    voices for both test splits.
    """
    from mwc_dist.demo.quotes import read_topics, split_quotes

    num_test = max(1, int(round(count * test_fraction)))
    splits = split_quotes(read_topics(), count - 2 * num_test, num_test, num_test, num_test, seed)
    voices = VOICES["es"]
    voices_of = {
        "train": voices[: -2 * NUM_TEST_VOICES],
        "validation": voices[-2 * NUM_TEST_VOICES : -NUM_TEST_VOICES],
        "test": voices[-NUM_TEST_VOICES:],
        "ood": voices[-NUM_TEST_VOICES:],
    }
    rng = random.Random(seed + 1)
    out: dict[str, list[Utterance]] = {"indomain": [], "ood": []}
    n = 0
    for split in ("train", "validation", "test", "ood"):
        corpus = "ood" if split == "ood" else "indomain"
        for _topic, text in splits[split]:
            name = "test" if split == "ood" else split
            out[corpus].append(_utterance(rng, n, text, "es", voices_of[split], name, name))
            n += 1
    return out


def _utterance(rng: random.Random, n: int, text: str, language: str, voices, folder: str, split: str) -> Utterance:
    """Utterance ``n``: a voice from ``voices``, the n-th format, and a random rate, channels, speed and pitch."""
    voice, variant = rng.choice(voices)
    fmt = FORMAT_CYCLE[n % len(FORMAT_CYCLE)]
    rate, channels = rng.choice([(22050, 1)] * 6 + [(44100, 2), (48000, 1)])
    return Utterance(
        f"{folder}/{language}_{n:05d}.{fmt}",
        text,
        language,
        voice,
        variant,
        speed=rng.randint(140, 180),
        pitch=rng.randint(35, 65),
        fmt=fmt,
        rate=rate,
        channels=channels,
        split=split,
    )


def speak(utt: Utterance) -> tuple:
    """espeak-ng -> 22.05 kHz float32 samples."""
    import soundfile as sf

    cmd = ["espeak-ng", "-v", f"{utt.voice}+{utt.variant}", "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout"]
    # the text on stdin: a sentence starting with "-" would read as an option
    wav = subprocess.run([*cmd, "--stdin"], input=utt.text.encode(), check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return samples, rate


def render(utt: Utterance, out_dir: Path) -> str:
    from mwc_dist.audio.encode import resample, write_audio

    samples, rate = speak(utt)
    if utt.rate != rate:
        samples, rate = resample(samples[:, None], rate, utt.rate)[:, 0], utt.rate
    path = out_dir / utt.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")  # a re-run reuses finished files only
    write_audio(tmp, samples, rate, channels=utt.channels, fmt=utt.fmt)
    tmp.replace(path)
    return utt.file_name


def make_demo_corpus(
    out_dir: str | Path,
    language: str = "es",
    count: int = 2000,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    text: str = "grammar",
) -> Path:
    """Write the corpus and metadata.csv; reuses files already there. Returns the (first) metadata path.

    ``text="grammar"``: template sentences, OUT/metadata.csv (train/validation decided by ``mwc shard``, held-out
    rows ``split=test``). ``text="quotes"`` (Spanish): natural sentences from fortunes-es, OUT/indomain/metadata.csv
    (train, validation, test) and OUT/ood/metadata.csv (test, topics never trained on).
    """
    from tqdm import tqdm

    from mwc_dist.data.shard import ordered_map

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install -y espeak-ng` (make demo / make test do it)")
    if language not in GRAMMAR:
        raise ValueError(f"language {language!r}: choose one of {', '.join(GRAMMAR)}")
    if text not in ("grammar", "quotes"):
        raise ValueError(f"text {text!r}: choose grammar or quotes")
    if text == "quotes" and language != "es":
        raise ValueError("the quotes corpus (fortunes-es) is Spanish: use --language es or --text grammar")
    out_dir = Path(out_dir)
    corpora = (
        plan_quotes_corpus(count, test_fraction, seed)
        if text == "quotes"
        else {"": plan_corpus(language, count, test_fraction, seed)}
    )
    todo = [
        (out_dir / sub, u) for sub, utts in corpora.items() for u in utts if not (out_dir / sub / u.file_name).is_file()
    ]
    start = time.time()
    workers = workers or os.cpu_count() or 1
    for _ in tqdm(
        ordered_map(_render_job, todo, workers),
        total=len(todo),
        desc="speaking",
        unit="utt",
        disable=not progress,
    ):
        pass
    metas = [_write_metadata(out_dir / sub, utts) for sub, utts in corpora.items()]
    if progress:
        total = sum(len(u) for u in corpora.values())
        print(f"{total} utterances ({len(todo)} new) in {out_dir} in {time.time() - start:.1f} s")
    return metas[0]


def _render_job(job: tuple[Path, Utterance]) -> str:
    return render(job[1], job[0])


def _write_metadata(root: Path, utts: list[Utterance]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = root / "metadata.csv"
    with open(meta.with_suffix(".tmp"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "text", "language", "speaker", "split"])
        for u in utts:
            w.writerow([u.file_name, u.text, u.language, f"{u.voice}+{u.variant}", u.split])
    meta.with_suffix(".tmp").replace(meta)
    return meta
