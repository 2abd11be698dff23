"""Text-to-speech: log-mel images and back, held-out speaker/word pairs, a tiny speaker-conditioned model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import SchemaError, TesseraError
from tessera.generate.diffusion import ModelSettings, TextConditioner, TrainSettings
from tessera.generate.speech import (
    FRAMES,
    HOP,
    N_MELS,
    SAMPLE_RATE,
    WORDS,
    heldout_pairs,
    load_config,
    mel_image,
    mel_to_audio,
    speak,
    train_data,
)
from tessera.generate.diffusion import train_denoiser

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def tone(freq: float, seconds: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.concatenate([np.zeros(800), wave, np.zeros(800)]).astype(np.float32)  # silence either side


def test_mel_image_trims_silence_and_round_trips_through_griffin_lim():
    image = mel_image(tone(600.0))
    assert image.shape == (N_MELS, FRAMES) and image.dtype == np.float32
    assert image.min() >= -1.0 and image.max() <= 1.0
    loud_frames = (image.max(axis=0) > 0.5).sum()
    assert 20 <= loud_frames <= 30  # 0.4 s of tone at 16 ms a frame; the silence was trimmed, not kept
    wave = mel_to_audio(image)
    assert len(wave) == pytest.approx(FRAMES * HOP, abs=HOP)
    again = mel_image(wave)
    band = lambda im: int(im[:, :10].mean(axis=1).argmax())  # noqa: E731
    assert abs(band(again) - band(image)) <= 1  # the tone's mel band survives the vocoder
    assert band(mel_image(tone(1800.0))) > band(image) + 5


def test_mel_image_refuses_what_is_not_a_mono_waveform():
    with pytest.raises(TesseraError, match="mono waveform"):
        mel_image(np.zeros((2, 4000)))
    with pytest.raises(TesseraError, match="mono waveform"):
        mel_image(np.zeros(10))


def test_heldout_pairs_keep_every_speaker_and_every_digit_in_training():
    held = heldout_pairs(SPEAKERS)
    assert len(held) == 12 and len(set(held)) == 12
    every = {(s, d) for s in SPEAKERS for d in range(10)}
    remaining = every - set(held)
    assert {s for s, _ in remaining} == set(SPEAKERS)
    assert {d for _, d in remaining} == set(range(10))
    for speaker in SPEAKERS:
        assert sum(s == speaker for s, _ in held) == 2


def test_train_data_leaves_out_the_heldout_pairs():
    meta = pd.DataFrame([{"speaker": s, "digit": d} for s in SPEAKERS for d in range(10)])
    images = [np.full((N_MELS, FRAMES), i / 100, np.float32) for i in range(len(meta))]
    data = train_data(meta, images, heldout_pairs(SPEAKERS))
    assert len(data.samples) == 48 and data.samples.shape[1:] == (1, N_MELS, FRAMES)
    assert data.label_names == sorted(SPEAKERS)
    seen = {(data.label_names[int(data.labels[i])], p) for i, p in data.pairs.tolist()}
    george_prompts = {data.prompts[p] for s, p in seen if s == "george"}
    assert "zero" not in george_prompts and "one" not in george_prompts and "two" in george_prompts


def test_bad_speech_config_names_the_field():
    for kind in ("decoder", "model"):  # the one-pass decoder's config and the diffusion one
        with pytest.raises(SchemaError, match=r"data.heldout: Input should be 'pairs' or 'none'"):
            load_config({kind: {}, "data": {"heldout": "some"}}, "speech.yaml")


@pytest.fixture(scope="module")
def tiny_speech(minilm):
    """Two words x two speakers of synthetic 'speech' (a tone per word, louder or softer per speaker)."""
    torch.set_num_threads(1)
    meta = pd.DataFrame([{"speaker": s, "digit": d} for s in ("ann", "bob") for d in (1, 2) for _ in range(2)])
    images = [mel_image(tone(300.0 if d == 1 else 1500.0) * (1.0 if s == "ann" else 0.3)) for s, d in zip(meta["speaker"], meta["digit"])]
    data = train_data(meta, images, heldout=[])
    model = ModelSettings(block_out_channels=(16, 32), attention_levels=(1,), context_dim=32, patch=4)
    generator = train_denoiser(data, TextConditioner(minilm), model, TrainSettings(steps=300, batch_size=8, lr=3e-3, warmup=10, ema_decay=0.99),
                               log=lambda _: None)
    generator.meta["task"] = "text2speech"
    return generator


@pytest.mark.slow  # the fixture trains for ~20 s ("one" and "two" are close in MiniLM space: cosine 0.78)
def test_tiny_model_says_each_word_at_its_pitch(tiny_speech):
    waves = speak(tiny_speech, [WORDS[1], WORDS[2]], 1, speaker="ann", steps=20, progress=False)
    assert len(waves) == 2 and all(w.dtype == np.float32 and len(w) > SAMPLE_RATE // 2 for w in waves)
    low, high = (np.abs(np.fft.rfft(w)) for w in waves)
    freqs = np.fft.rfftfreq(len(waves[0]), 1 / SAMPLE_RATE)
    assert freqs[low.argmax()] < 700 < freqs[high.argmax()]


@pytest.mark.slow
def test_unknown_speaker_is_a_clear_error(tiny_speech):
    with pytest.raises(TesseraError, match=r"unknown label\(s\) \['carol'\]; this model knows \['ann', 'bob'\]"):
        speak(tiny_speech, "one", speaker="carol", progress=False)
