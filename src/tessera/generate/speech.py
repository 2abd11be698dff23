"""Text-to-speech over FSDD log-mel spectrograms: a one-pass decoder (default) or the diffusion model.

Two generators draw the same spectrograms: the one-pass decoder of
:mod:`tessera.generate.speech_decoder` (a config with a ``decoder:`` section; the default,
``configs/generate/text2speech_fsdd.yaml``) and the diffusion UNet of
:mod:`tessera.generate.diffusion` (a ``model:`` section,
``configs/generate/text2speech_fsdd_diffusion.yaml``). :func:`load_generator` loads either
from its folder, and :func:`speak` speaks with either.

A spoken digit becomes a 64-mel x 64-frame log-mel image (8 kHz, 64 ms window, 16 ms
hop: 1.02 s, longer than 99 % of FSDD recordings once leading and trailing silence is
cut), scaled to [-1, 1] relative to its loudest bin (80 dB range). The same
text-conditioned UNet that draws garments draws these, conditioned on the word's text
embedding ("seven", "the word seven", ...) and, optionally, on the speaker (FSDD's six).
Griffin-Lim (``librosa``) turns a generated spectrogram back into a waveform; it invents the
phase, so even a perfect spectrogram sounds slightly metallic (the benchmark measures that
loss separately, on real spectrograms).

Speaker/word combinations can be held out of training entirely (:func:`heldout_pairs`):
the model then has to compose a speaker it heard saying other words with a word it heard
from other speakers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from tessera.errors import SchemaError, TesseraError
from tessera.generate.diffusion import (
    DEFAULT_TEXT_ENCODER,
    META_FILE,
    FORMAT as DIFFUSION_FORMAT,
    DiffusionGenerator,
    ModelSettings,
    TextConditioner,
    TrainData,
    TrainSettings,
    _Settings,
    load_task_config,
    train_denoiser,
)
from tessera.generate.speech_decoder import FORMAT as DECODER_FORMAT
from tessera.generate.speech_decoder import DecoderSettings, DecoderTrainSettings, SpeechDecoder, train_decoder

SAMPLE_RATE, N_FFT, HOP, N_MELS, FRAMES, TOP_DB = 8000, 512, 128, 64, 64, 80.0
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("{}", "the word {}", "say {}", "the number {}")


def prompts_for(digit: int) -> list[str]:
    """The training prompts of a digit: its word in a few frames."""
    return [t.format(WORDS[digit]) for t in TEMPLATES]


# -- spectrograms -------------------------------------------------------------------------------
def mel_image(wave: np.ndarray) -> np.ndarray:
    """A mono 8 kHz waveform as a (64, 64) float32 log-mel image in [-1, 1], silence trimmed, padded with -1."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or len(wave) < N_FFT // 4:
        raise TesseraError(f"expected a mono waveform of at least {N_FFT // 4} samples, got shape {wave.shape}")
    trimmed, _ = librosa.effects.trim(wave, top_db=40, frame_length=N_FFT, hop_length=HOP)
    if len(trimmed) >= N_FFT // 4:
        wave = trimmed
    power = librosa.feature.melspectrogram(
        y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, fmax=SAMPLE_RATE / 2, power=2.0
    )
    db = librosa.power_to_db(power, ref=np.max, top_db=TOP_DB)  # in [-80, 0]
    image = np.full((N_MELS, FRAMES), -1.0, dtype=np.float32)
    frames = min(FRAMES, db.shape[1])
    image[:, :frames] = db[:, :frames] / (TOP_DB / 2) + 1.0
    return image


def mel_to_audio(image: np.ndarray | torch.Tensor, n_iter: int = 32) -> np.ndarray:
    """Invert a (64, 64) log-mel image in [-1, 1] to an 8 kHz waveform (mel pseudo-inverse, then Griffin-Lim)."""
    import librosa

    image = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    image = image.reshape(N_MELS, FRAMES).astype(np.float32)
    power = librosa.db_to_power((np.clip(image, -1.0, 1.0) - 1.0) * (TOP_DB / 2))
    wave = librosa.feature.inverse.mel_to_audio(
        power, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, fmax=SAMPLE_RATE / 2, power=2.0, n_iter=n_iter
    )
    peak = float(np.abs(wave).max())
    return (0.9 * wave / peak if peak > 0 else wave).astype(np.float32)


# -- data ---------------------------------------------------------------------------------------
def heldout_pairs(speakers: Sequence[str]) -> list[tuple[str, int]]:
    """Two digits per speaker never seen together in training: the i-th speaker (sorted) loses digits 2i, 2i+1 (mod 10).

    Every digit stays in training through other speakers, and every speaker through other digits.
    """
    return [(s, d % 10) for i, s in enumerate(sorted(speakers)) for d in (2 * i, 2 * i + 1)]


def load_fsdd(root: str | Path | None = None) -> tuple[Any, list[np.ndarray]]:
    """FSDD metadata (one row per recording) and the (64, 64) log-mel image of each recording."""
    import soundfile as sf

    from tessera.datasets.fsdd import load_metadata
    from tessera.datasets.home import data_home

    home = Path(root) if root else data_home()
    if not (home / "fsdd" / "metadata.csv").is_file():
        raise TesseraError(f"FSDD not found at {home / 'fsdd'}; set TESSERA_DATA to the folder that holds fsdd/")
    meta = load_metadata(home)
    images = []
    for path in meta["path"]:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise TesseraError(f"{path}: expected {SAMPLE_RATE} Hz, got {rate}")
        images.append(mel_image(wave.mean(axis=1)))
    return meta, images


def train_data(meta: Any, images: Sequence[np.ndarray], heldout: Sequence[tuple[str, int]]) -> TrainData:
    """Every recording not in a held-out (speaker, digit) pair, with its digit's prompts and its speaker."""
    held = set(heldout)
    keep = [i for i, (s, d) in enumerate(zip(meta["speaker"], meta["digit"])) if (s, int(d)) not in held]
    if not keep:
        raise TesseraError("every recording is held out; nothing is left to train on")
    speakers = sorted(meta["speaker"].unique())
    prompts = [p for d in range(10) for p in prompts_for(d)]
    index = {p: i for i, p in enumerate(prompts)}
    pairs = [(k, index[p]) for k, i in enumerate(keep) for p in prompts_for(int(meta["digit"].iloc[i]))]
    return TrainData(
        samples=torch.from_numpy(np.stack([images[i] for i in keep]))[:, None],
        prompts=prompts,
        pairs=torch.tensor(pairs, dtype=torch.long),
        labels=torch.tensor([speakers.index(meta["speaker"].iloc[i]) for i in keep]),
        label_names=speakers,
    )


# -- config and training ---------------------------------------------------------------------------
class SpeechDataSettings(_Settings):
    dataset: Literal["fsdd"] = "fsdd"
    root: str | None = None
    heldout: Literal["pairs", "none"] = "pairs"  # "pairs": hold out heldout_pairs(speakers)
    speaker_condition: bool = True


class Text2SpeechConfig(_Settings):
    """The diffusion text-to-speech config (a ``model:`` section)."""

    task: Literal["text2speech"] = "text2speech"
    data: SpeechDataSettings = SpeechDataSettings()
    text_encoder: str = DEFAULT_TEXT_ENCODER
    model: ModelSettings = ModelSettings(block_out_channels=(32, 64), patch=4, attention_levels=(1,))
    train: TrainSettings = TrainSettings()
    output: str = "runs/text2speech"


class Text2SpeechDecoderConfig(_Settings):
    """The one-pass decoder text-to-speech config (a ``decoder:`` section)."""

    task: Literal["text2speech"] = "text2speech"
    data: SpeechDataSettings = SpeechDataSettings()
    text_encoder: str = DEFAULT_TEXT_ENCODER
    decoder: DecoderSettings = DecoderSettings()
    train: DecoderTrainSettings = DecoderTrainSettings()
    output: str = "runs/text2speech"


SpeechConfig = Text2SpeechConfig | Text2SpeechDecoderConfig
Generator = DiffusionGenerator | SpeechDecoder


def load_config(raw: Any, source: str, base_dir: str | os.PathLike = ".") -> SpeechConfig:
    """Validate a config mapping: ``decoder:`` (one-pass) or ``model:`` (diffusion), exactly one of them.

    ``output`` and ``data.root`` are relative to the config's folder.
    """
    if isinstance(raw, dict):
        has = [k for k in ("decoder", "model") if k in raw]
        if len(has) == 2:
            raise SchemaError(f"{source}: give 'decoder' (the one-pass log-mel decoder) or 'model' (the diffusion "
                              "UNet), not both")
        if not has:
            raise SchemaError(f"{source}: say which generator to train: a 'decoder' section (the one-pass log-mel "
                              "decoder; may be empty: decoder: {{}}) or a 'model' section (the diffusion UNet)")
        cls = Text2SpeechDecoderConfig if has == ["decoder"] else Text2SpeechConfig
        return load_task_config(cls, raw, source, base_dir)
    return load_task_config(Text2SpeechDecoderConfig, raw, source, base_dir)  # not a mapping: the usual clear error


def fit(
    cfg: SpeechConfig,
    *,
    text: TextConditioner | None = None,
    fsdd: tuple[Any, list[np.ndarray]] | None = None,
    log: Callable[[str], None] | None = None,
) -> Generator:
    """Train a text-to-speech generator; ``fsdd`` reuses already computed spectrograms (:func:`load_fsdd`)."""
    meta, images = fsdd or load_fsdd(cfg.data.root)
    held = heldout_pairs(meta["speaker"].unique()) if cfg.data.heldout == "pairs" else []
    data = train_data(meta, images, held)
    if not cfg.data.speaker_condition:
        data = TrainData(data.samples, data.prompts, data.pairs)
    text = text or TextConditioner(cfg.text_encoder)
    generator: Generator
    if isinstance(cfg, Text2SpeechDecoderConfig):
        generator = train_decoder(data, text, cfg.decoder, cfg.train, log=log)
    else:
        generator = train_denoiser(data, text, cfg.model, cfg.train, log=log)
    generator.meta.update({"task": "text2speech", "dataset": "fsdd", "heldout_pairs": [list(p) for p in held],
                           "sample_rate": SAMPLE_RATE})
    return generator


def run(cfg: SpeechConfig, output: str | os.PathLike | None = None) -> tuple[Generator, Path]:
    generator = fit(cfg)
    return generator, generator.save(output or cfg.output)


def load_generator(path: str | os.PathLike, text: TextConditioner | None = None) -> Generator:
    """Whichever generator is saved in ``path``: a diffusion model (images or speech) or a speech decoder.

    ``text`` reuses an already loaded text encoder (it must be the one the folder names).
    """
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise TesseraError(f"{path} is not a saved generator folder (no {META_FILE})")
    try:
        kind = json.loads(meta_path.read_text()).get("format")
    except (json.JSONDecodeError, AttributeError) as e:
        raise TesseraError(f"{meta_path} is not a generator's meta file (not a JSON object): {e}") from None
    if kind == DECODER_FORMAT:
        return SpeechDecoder.load(path, text=text)
    if kind == DIFFUSION_FORMAT:
        return DiffusionGenerator.load(path, text=text)
    raise TesseraError(f"{meta_path} has format {kind!r}; this Tessera reads {DIFFUSION_FORMAT!r} and {DECODER_FORMAT!r}")


def speak(
    generator: Generator,
    prompts: str | Sequence[str],
    n: int = 1,
    *,
    speaker: str | Sequence[str] | None = None,
    n_iter: int = 32,
    **kwargs: Any,
) -> list[np.ndarray]:
    """8 kHz waveforms, ``n`` per prompt (prompt-major); other keyword arguments as :meth:`DiffusionGenerator.sample`.

    A speech decoder takes the same arguments; it draws in one pass, so the sampler's are ignored.
    """
    if generator.meta.get("task") != "text2speech":
        raise SchemaError(f"this generator was trained for {generator.meta.get('task')!r}, not text2speech")
    mels = generator.sample(prompts, n, labels=speaker, **kwargs)
    return [mel_to_audio(m, n_iter=n_iter) for m in mels]
