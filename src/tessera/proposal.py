"""What Tessera proposes for a new table: an encoder per input, and text derived from sound and pixels.

`tessera data inspect` shows (and saves) the proposal and the quickstart trains with it. With the
zoo installed (:mod:`tessera.zoo`), an input gets a pretrained, frozen tower where one fits and a
from-scratch encoder where none does, each with a line saying which and why:

* images: MobileNetV2's ImageNet features for photos; from scratch for tiny grayscale images
  (digits, sketches), which look like nothing in ImageNet;
* audio: Google's speech embedding (the zoo's audio tower; trained on speech);
* free text: all-MiniLM-L6-v2 sentence embeddings;
* numbers, categories, series, video: from scratch, as no pretrained tower in the zoo reads them.

It also proposes derived text inputs (:mod:`tessera.derive`): a transcript for audio in which
Whisper hears speech, and the text read from images that show some. Detection looks at a few
sampled rows only (``sample``), so inspecting stays a matter of seconds. Without the zoo nothing
changes: the proposal is the schema as inferred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tessera import zoo
from tessera.errors import DataError
from tessera.media import is_missing, resolve_media
from tessera.schema import InputSpec, Schema

SAMPLE = 4  # rows looked at per media input
TEXT_SAMPLE = 200  # ... and per text input
TINY = 64  # pixels: grayscale images up to this size are digits or sketches, not photos
IMAGE_TOWER, AUDIO_TOWER, TEXT_TOWER = "mobilenet_v2", "speech_embedding", "sentence_transformer"
# Options a pretrained tower sets itself (tessera.encoders.input_options): the schema's own would contradict it.
TOWER_SETS = {"image": ("size", "channels", "mean", "std"),
              "audio": ("sample_rate", "n_mels", "n_fft", "hop_length", "frames", "normalize", "representation", "max_seconds")}


@dataclass
class Choice:
    encoder: str
    pretrained: bool
    why: str
    options: dict[str, Any] = field(default_factory=dict)  # the encoder's options (model config)

    def line(self, name: str) -> str:
        kind = "pretrained, frozen" if self.pretrained else "from scratch"
        return f"{name}: {self.encoder} ({kind}): {self.why}"


@dataclass
class Proposal:
    """The schema with encoders chosen and derived inputs added, the model config's encoders, and why."""

    schema: Schema
    encoders: dict[str, dict[str, Any]]
    choices: dict[str, Choice]

    @property
    def lines(self) -> list[str]:
        return [c.line(name) for name, c in self.choices.items()]

    def fit_config(self, table: str, output: str) -> dict[str, Any]:
        """A fit config that trains what is proposed (``tessera fit`` reads it)."""
        data: dict[str, Any] = {"table": table, "schema": self.schema.to_dict()}
        return {"data": data, "model": {"fusion": "concat", "encoders": self.encoders}, "output": output}


def any_tower_installed() -> bool:
    return any(zoo.is_installed(n) for n in (IMAGE_TOWER, AUDIO_TOWER, TEXT_TOWER))


def propose(frame: pd.DataFrame, schema: Schema, base_dir: str | None, *, derive: bool = True, sample: int = SAMPLE) -> Proposal:
    """The proposal for ``schema``'s inputs over ``frame``; ``derive`` also proposes derived text inputs."""
    if not any_tower_installed():
        return Proposal(schema, {}, {})
    inputs: dict[str, InputSpec] = {}
    encoders: dict[str, dict[str, Any]] = {}
    choices: dict[str, Choice] = {}
    proposed: dict[str, tuple[Choice, InputSpec]] = {}
    for name, spec in schema.inputs.items():
        # Text is cheap to look at: more rows, so max_length covers the long ones.
        cells = _sampled(frame, spec.columns[0], TEXT_SAMPLE if spec.modality == "text" else sample) if len(spec.columns) == 1 else []
        audio = spec.modality == "audio" and not spec.encoder
        speech = _speech(cells, base_dir) if audio and (derive or zoo.is_installed(AUDIO_TOWER)) else None
        proposed[name] = _choose(spec, cells, base_dir, speech)
        derived = _derived(name, spec, cells, base_dir, speech) if derive and not spec.via else None
        if derived is not None:
            extra, text, about = derived
            proposed[extra] = _text_tower(text, [], about)
    encoders = {
        name: {"name": c.encoder, **({"options": c.options} if c.options else {})} for name, (c, _) in proposed.items() if c.pretrained
    }
    inputs = {name: spec for name, (_, spec) in proposed.items()}
    out = Schema(inputs, schema.target, schema.task, schema.split, schema.ignore)
    return Proposal(out, encoders, {name: c for name, (c, _) in proposed.items()})


def _sampled(frame: pd.DataFrame, column: str, n: int) -> list[Any]:
    """Up to ``n`` non-missing cells, spread over the table (first, last and between)."""
    values = [v for v in frame[column].tolist() if not is_missing(v)]
    if len(values) <= n:
        return values
    return [values[i] for i in np.linspace(0, len(values) - 1, n).round().astype(int)]


def _choose(
    spec: InputSpec, cells: list[Any], base_dir: str | None, speech: tuple[int, int] | None
) -> tuple[Choice, InputSpec]:
    from tessera.preprocess import preprocessor_class

    default = preprocessor_class(spec.modality).default_encoder
    if spec.encoder:
        return Choice(spec.encoder, spec.encoder in zoo.CATALOG, "set in the schema"), spec
    if spec.modality == "image":
        return _image_tower(spec, cells, base_dir, default)
    if spec.modality == "audio":
        return _audio_tower(spec, cells, base_dir, default, speech)
    if spec.modality == "text":
        words = [len(str(v).split()) for v in cells if isinstance(v, str)]
        return _text_tower(spec, words, f"free text (up to {max(words, default=0)} words in the rows looked at)")
    what = {"numeric": "numbers", "categorical": "categories", "timeseries": "series", "video": "video"}.get(spec.modality, spec.modality)
    return Choice(default, False, f"no pretrained tower in the zoo reads {what}"), spec


def _tower_spec(spec: InputSpec, encoder: str, options: dict[str, Any] | None = None) -> InputSpec:
    kept = {k: v for k, v in spec.options.items() if k not in TOWER_SETS.get(spec.modality, ())}
    return InputSpec(spec.modality, spec.columns, {**kept, **(options or {})}, encoder, spec.via)


def _image_tower(spec: InputSpec, cells: list[Any], base_dir: str | None, default: str) -> tuple[Choice, InputSpec]:
    looks = [_image_look(v, base_dir) for v in cells]
    looks = [x for x in looks if x is not None]
    if not looks:
        return Choice(default, False, "no readable image among the rows looked at"), spec
    width, height = (int(np.median([x[i] for x in looks])) for i in (0, 1))
    gray = sum(x[2] for x in looks) > len(looks) / 2
    if gray and max(width, height) <= TINY:
        why = f"tiny grayscale images ({width}x{height} px, like digits or sketches): ImageNet features do not fit them"
        return Choice(default, False, why), spec
    if not zoo.is_installed(IMAGE_TOWER):
        return Choice(default, False, f"{IMAGE_TOWER} is not installed ({zoo.tower_info(IMAGE_TOWER).install})"), spec
    kind = "grayscale" if gray else "colour"
    why = f"{kind} pictures of about {width}x{height} px: MobileNetV2's ImageNet features, computed once per image and cached"
    return Choice(IMAGE_TOWER, True, why), _tower_spec(spec, IMAGE_TOWER)


def _image_look(value: Any, base_dir: str | None) -> tuple[int, int, bool] | None:
    """Width, height and whether the image is grayscale (one channel, or three equal ones)."""
    from PIL import Image

    try:
        with resolve_media(value, base_dir).open() as fh, Image.open(fh) as im:
            im.draft("RGB", (128, 128))
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
            width, height = im.size
    except (DataError, OSError, ValueError):
        return None
    gray = rgb.ndim == 3 and int(np.abs(rgb - rgb[..., :1]).max()) <= 8
    return width, height, gray


def _audio_tower(
    spec: InputSpec, cells: list[Any], base_dir: str | None, default: str, speech: tuple[int, int] | None
) -> tuple[Choice, InputSpec]:
    if not zoo.is_installed(AUDIO_TOWER):
        return Choice(default, False, f"{AUDIO_TOWER} is not installed ({zoo.tower_info(AUDIO_TOWER).install})"), spec
    seconds = _clip_seconds(spec, cells, base_dir)
    heard = "" if speech is None else (f"Whisper hears words in {speech[0]} of {speech[1]} clips looked at; " if speech[0] * 2 >= speech[1]
                                        else f"sounds, not speech (Whisper hears words in {speech[0]} of {speech[1]}); ")
    why = f"{heard}Google's speech embedding, the zoo's audio tower, over the first {seconds:g} s of each clip, cached"
    return Choice(AUDIO_TOWER, True, why), _tower_spec(spec, AUDIO_TOWER, {"max_seconds": seconds})


def _clip_seconds(spec: InputSpec, cells: list[Any], base_dir: str | None) -> float:
    """How much of each clip the tower reads: what the schema's options kept, else the sampled clips' longest;
    from 1 s (the speech embedding's shortest window, 0.79 s; shorter clips are zero-padded) to 10 s."""
    o = spec.options
    if "frames" in o:
        return max(1.0, round(o["frames"] * o.get("hop_length", 160) / o.get("sample_rate", 16000), 2))
    if "max_seconds" in o:
        return max(1.0, float(o["max_seconds"]))
    import soundfile as sf

    longest = 0.0
    for v in cells:
        try:
            with resolve_media(v, base_dir).open() as fh:
                longest = max(longest, sf.info(fh).duration)
        except (DataError, OSError, RuntimeError, sf.LibsndfileError):
            continue
    return float(min(10.0, max(1.0, math.ceil(longest * 2) / 2))) if longest else 10.0


def _speech(cells: list[Any], base_dir: str | None) -> tuple[int, int] | None:
    """(clips Whisper hears words in, clips looked at); None when Whisper is not installed."""
    if not zoo.is_installed("transcribe") or not cells:
        return None
    from tessera.preprocess.audio import decode_audio
    from tessera.transcribe import hears_speech

    heard = looked = 0
    for v in cells:
        try:
            wave, rate = decode_audio(resolve_media(v, base_dir), max_seconds=30.0)
        except DataError:
            continue
        looked += 1
        heard += hears_speech(wave, rate)
    return heard, looked


def _text_tower(spec: InputSpec, words: list[int], about: str) -> tuple[Choice, InputSpec]:
    """MiniLM for a text input (``words``: word counts of sampled rows, to size ``max_length``), else from scratch."""
    if not zoo.is_installed(TEXT_TOWER):
        return Choice("text_transformer", False, f"{about}; {TEXT_TOWER} is not installed ({zoo.tower_info(TEXT_TOWER).install})"), spec
    (model,) = (str(p) for p in zoo.weight_paths(TEXT_TOWER))
    length = 32 if not words else int(min(256, max(16, 16 * math.ceil((1.5 * max(words) + 2) / 16))))
    options = {"tokenizer": "pretrained", "pretrained": model, "max_length": length}
    choice = Choice(TEXT_TOWER, True, f"{about}: all-MiniLM-L6-v2 sentence embeddings, cached", {"model": model})
    return choice, InputSpec("text", spec.columns, {**spec.options, **options}, TEXT_TOWER, spec.via)


def _derived(
    name: str, spec: InputSpec, cells: list[Any], base_dir: str | None, speech: tuple[int, int] | None
) -> tuple[str, InputSpec, str] | None:
    """A derived text input for ``spec`` (its name, spec and what it holds) when one fits: speech, or images showing text."""
    if spec.modality == "audio" and speech and speech[1] and speech[0] * 2 >= speech[1]:
        about = f"what is said in {name} (Whisper tiny.en hears words in {speech[0]} of {speech[1]} clips looked at)"
        return f"{name}_transcript", InputSpec("text", spec.columns, {}, None, "transcribe"), about
    if spec.modality == "image" and zoo.is_installed("ocr"):
        read = _ocr(cells, base_dir)
        if read and read[0] * 2 >= read[1]:
            about = f"the text shown in {name} (RapidOCR reads text in {read[0]} of {read[1]} images looked at)"
            return f"{name}_text", InputSpec("text", spec.columns, {}, None, "ocr"), about
    return None


def _ocr(cells: list[Any], base_dir: str | None) -> tuple[int, int] | None:
    """(images with at least 3 letters or digits read, images looked at)."""
    from tessera.ocr import read_text

    found = looked = 0
    for v in cells:
        try:
            text = read_text(resolve_media(v, base_dir).read_bytes())
        except (DataError, OSError):
            continue
        looked += 1
        found += sum(c.isalnum() for c in text) >= 3
    return (found, looked) if looked else None
