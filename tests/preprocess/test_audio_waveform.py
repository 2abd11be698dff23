"""representation: waveform, the 16 kHz mono samples the pretrained audio towers compute their own features from."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tessera.errors import SchemaError
from tessera.model import data_facts
from tessera.preprocess import LoadContext, collate_samples
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
    assert data_facts(pre) == {"samples": 16000, "sample_rate": 16000}
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
