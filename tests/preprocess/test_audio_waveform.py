"""representation: waveform, the 16 kHz mono samples the pretrained audio towers compute their own features from."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tessera.errors import SchemaError
from tessera.preprocess import LoadContext, ModalityBatch, collate_samples
from tessera.preprocess.audio import AudioPreprocessor


def test_waveform_is_resampled_mono_padded_with_a_mask(tmp_path):
    t = np.arange(4000) / 8000  # 0.5 s at 8 kHz, stereo
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", stereo, 8000)
    pre = AudioPreprocessor(["a"], representation="waveform", max_seconds=1.0)
    sample = pre.load([str(tmp_path / "a.wav")], LoadContext())
    assert sample.data.shape == (16000,) and sample.data.dtype == np.float32
    assert sample.mask.sum() == 8000 and sample.mask[:8000].all()
    assert np.all(sample.data[8000:] == 0) and 0.45 < np.abs(sample.data[:8000]).max() <= 0.51
    batch = collate_samples(pre, [sample, None])
    assert batch.data.shape == (2, 16000) and batch.mask.shape == (2, 16000) and not batch.mask[1].any()
    assert pre.encoder_facts() == {"samples": 16000, "sample_rate": 16000}
    assert "waveform" in pre.describe()


def test_long_clips_keep_their_beginning(tmp_path):
    sf.write(tmp_path / "long.wav", np.full(48000, 0.25, np.float32), 16000)
    sample = AudioPreprocessor(["a"], representation="waveform", max_seconds=2.0).load([str(tmp_path / "long.wav")], LoadContext())
    assert sample.data.shape == (32000,) and sample.mask.all()


def test_waveform_options_are_checked():
    with pytest.raises(SchemaError, match="representation must be one of"):
        AudioPreprocessor(["a"], representation="raw")
    with pytest.raises(SchemaError, match="normalize: none with representation: waveform"):
        AudioPreprocessor(["a"], representation="waveform", normalize="utterance")


def test_waveform_noise_is_white_noise_at_the_requested_snr():
    pre = AudioPreprocessor(["a"], representation="waveform", max_seconds=1.0)
    wave = torch.full((2, 16000), 0.5)
    batch = ModalityBatch(wave, torch.tensor([True, False]), torch.arange(16000).expand(2, 16000) < 12000)
    noisy = pre.corrupt(batch, 0.0, torch.Generator().manual_seed(0)).data
    added = noisy[0, :12000] - 0.5
    assert added.pow(2).mean().item() == pytest.approx(0.25, rel=0.05)  # 0 dB: noise power = the clip's power
    assert torch.equal(noisy[0, 12000:], wave[0, 12000:]) and torch.equal(noisy[1], wave[1])  # padding, absent row
    assert torch.equal(pre.corrupt(batch, float("inf"), torch.Generator()).data, wave)
