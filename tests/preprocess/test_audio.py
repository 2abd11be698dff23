"""Audio decoding and log-mel features, on real files written into tmp_path."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from transformers.audio_utils import hertz_to_mel, mel_to_hertz

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource
from tessera.preprocess import ModalityBatch
from tessera.preprocess.audio import (
    LOG_EPS,
    LOG_FLOOR,
    AudioPreprocessor,
    add_noise_at_snr,
    decode_audio,
    log_mel_spectrogram,
    resample,
    to_mono,
)
from tessera.preprocess.base import LoadContext, Preprocessor, collate_samples, load_located


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo(sr: int = 44100, seconds: float = 1.0) -> np.ndarray:
    """(samples, 2) as soundfile wants it: 440 Hz left, 880 Hz right."""
    return np.stack([tone(440, sr, seconds), tone(880, sr, seconds)], axis=1)


def write_with_pyav(path: Path, fmt: str, codec: str | None, sr: int = 22050, seconds: float = 1.0, video: bool = False) -> None:
    """A container soundfile cannot open, so decoding has to go through the PyAV fallback."""
    signal = np.stack([tone(1000, sr, seconds)] * 2)
    with av.open(str(path), "w", format=fmt) as container:
        vstream = container.add_stream("mpeg4", rate=10) if video else None
        astream = container.add_stream(codec, rate=sr, layout="stereo") if codec else None
        if vstream is not None:
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
                frame.pts = i
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
        if astream is not None:
            for start in range(0, signal.shape[1], 1024):
                chunk = np.ascontiguousarray(signal[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = sr, start, Fraction(1, sr)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)


def load(pre: AudioPreprocessor, value, base_dir: Path | None = None, row: int = 0):
    return load_located(pre, (value,), LoadContext(base_dir=None if base_dir is None else str(base_dir), row=row))


@pytest.fixture
def pre() -> AudioPreprocessor:
    return AudioPreprocessor(["audio"], max_seconds=2.0)


# -- decoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_soundfile_formats_decode_stereo(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"a.{ext}"
    sf.write(path, stereo(), 44100)
    wave, sr = decode_audio(MediaSource(path=path))
    assert sr == 44100 and wave.dtype == np.float32
    assert wave.shape[0] == 2 and abs(wave.shape[1] - 44100) < 2000


def test_mp3_decodes_when_libsndfile_supports_it(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path / "a.mp3"
    sf.write(path, stereo(), 44100)
    wave, sr = decode_audio(MediaSource(path=path))
    assert sr == 44100 and wave.shape[0] == 2 and wave.shape[1] > 40000


@pytest.mark.parametrize(
    "name, fmt, codec, video",
    [("a.m4a", "mp4", "aac", False), ("a.mkv", "matroska", "flac", False), ("clip.mp4", "mp4", "aac", True)],
)
def test_containers_decode_through_pyav(tmp_path: Path, name: str, fmt: str, codec: str, video: bool) -> None:
    path = tmp_path / name
    write_with_pyav(path, fmt, codec, sr=22050, video=video)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # proves the fallback is what decoded it
    wave, sr = decode_audio(MediaSource(path=path))
    assert sr == 22050 and wave.shape[0] == 2 and wave.dtype == np.float32
    assert abs(wave.shape[1] - 22050) < 2048  # aac adds priming/padding samples
    assert 0.3 < np.abs(wave).max() < 0.7


def test_decode_stops_early_with_max_seconds(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", stereo(seconds=3.0), 44100)
    write_with_pyav(tmp_path / "a.mkv", "matroska", "flac", seconds=3.0)
    assert decode_audio(MediaSource(path=tmp_path / "a.wav"), max_seconds=1.0)[0].shape[1] == 44100
    assert 22050 <= decode_audio(MediaSource(path=tmp_path / "a.mkv"), max_seconds=1.0)[0].shape[1] < 3 * 22050


def test_mono_and_resample_lengths() -> None:
    x = stereo().T  # (2, 44100)
    mono = to_mono(x)
    assert mono.shape == (44100,) and np.allclose(mono, x.mean(axis=0))
    assert resample(mono, 44100, 16000).shape == (16000,)
    assert resample(x, 44100, 16000).shape == (2, 16000)
    assert resample(mono, 16000, 16000) is not None


# -- features -----------------------------------------------------------------------------
def test_sine_peaks_in_the_mel_bin_centred_on_its_frequency() -> None:
    sr, n_mels = 16000, 64
    mel = log_mel_spectrogram(tone(1000, sr, 1.0), sr, n_fft=400, hop_length=160, n_mels=n_mels)
    assert mel.shape == (n_mels, 101) and mel.dtype == np.float32
    edges = mel_to_hertz(np.linspace(hertz_to_mel(0.0, "slaney"), hertz_to_mel(sr / 2, "slaney"), n_mels + 2), "slaney")
    expected = int(np.argmin(np.abs(edges[1:-1] - 1000)))
    peaks = mel[:, 5:-5].argmax(axis=0)  # edge frames see zero padding
    assert (peaks == expected).all()


def test_stereo_44k_wav_is_mixed_to_mono_and_resampled(tmp_path: Path, pre: AudioPreprocessor) -> None:
    left = tone(1000, 44100, 1.0)
    sf.write(tmp_path / "cancel.wav", np.stack([left, -left], axis=1), 44100, subtype="FLOAT")  # mean is silence
    sf.write(tmp_path / "tone.wav", np.stack([left, left], axis=1), 44100)
    silent = load(pre, "cancel.wav", tmp_path)
    loud = load(pre, "tone.wav", tmp_path)
    assert silent.data.shape == (64, 200) and silent.mask.shape == (200,)
    assert int(loud.mask.sum()) == 1 + 16000 // 160  # one second at 16 kHz, centred frames
    assert np.allclose(silent.data, LOG_FLOOR, atol=1e-3)
    assert loud.data[:, 10:90].max() > 0


def test_short_clip_is_padded_with_log_floor_and_masked(tmp_path: Path, pre: AudioPreprocessor) -> None:
    sf.write(tmp_path / "short.wav", tone(1000, 16000, 0.5), 16000)
    s = load(pre, str(tmp_path / "short.wav"))
    valid = 1 + 8000 // 160
    assert s.mask.dtype == bool and s.mask[:valid].all() and not s.mask[valid:].any()
    assert s.data.dtype == np.float32 and np.all(s.data[:, valid:] == np.float32(LOG_FLOOR))


def test_long_clip_is_cropped_to_frames(tmp_path: Path) -> None:
    sf.write(tmp_path / "long.wav", tone(1000, 16000, 3.0), 16000)
    s = load(AudioPreprocessor(["audio"], max_seconds=1.0), "long.wav", tmp_path)
    assert s.data.shape == (64, 100) and s.mask.all()
    s = load(AudioPreprocessor(["audio"], frames=50, n_mels=32), "long.wav", tmp_path)
    assert s.data.shape == (32, 50) and s.mask.all()


def test_utterance_normalisation(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", tone(1000, 16000, 0.5) * 0.01, 16000)
    s = load(AudioPreprocessor(["audio"], max_seconds=1.0, normalize="utterance"), "a.wav", tmp_path)
    real = s.data[:, s.mask]
    assert abs(real.mean()) < 1e-4 and abs(real.std() - 1) < 1e-3
    assert np.all(s.data[:, ~s.mask] == 0)


def test_bytes_and_record_inputs_match_the_file(tmp_path: Path, pre: AudioPreprocessor) -> None:
    sf.write(tmp_path / "a.flac", tone(1000, 16000, 0.7), 16000)
    raw = (tmp_path / "a.flac").read_bytes()
    from_path = load(pre, "a.flac", tmp_path)
    for value in (raw, {"bytes": raw, "path": "a.flac"}, {"bytes": None, "path": "a.flac"}):
        s = load(pre, value, tmp_path)
        assert np.array_equal(s.data, from_path.data) and np.array_equal(s.mask, from_path.mask)


def test_missing_values_and_collate(tmp_path: Path, pre: AudioPreprocessor) -> None:
    sf.write(tmp_path / "a.wav", tone(1000, 16000, 0.5), 16000)
    for value in (None, float("nan"), "", {"bytes": None, "path": None}):
        assert load(pre, value) is None
    empty = pre.empty()
    assert empty.data.shape == (64, 200) and empty.mask.shape == (200,) and not empty.mask.any()
    batch = collate_samples(pre, [load(pre, "a.wav", tmp_path), None])
    assert tuple(batch.data.shape) == (2, 64, 200) and batch.present.tolist() == [True, False]
    assert batch.mask[0].sum() == 51 and not batch.mask[1].any()


def test_state_round_trip_gives_identical_output(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.ogg", stereo(seconds=0.8), 44100)
    pre = AudioPreprocessor(["clip"], sample_rate=8000, n_mels=40, n_fft=256, hop_length=80, max_seconds=1.5, normalize="utterance")
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, AudioPreprocessor) and again.config() == pre.config()
    a, b = load(pre, "a.ogg", tmp_path), load(again, "a.ogg", tmp_path)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize("options", [{"normalize": "global"}, {"hop_length": 0}, {"max_seconds": -1}, {"frames": 0}])
def test_bad_options_are_schema_errors(options: dict) -> None:
    with pytest.raises(SchemaError):
        AudioPreprocessor(["audio"], **options)


# -- bad input ---------------------------------------------------------------------------------
def where(row: int, path: Path) -> str:
    return re.escape(f"row {row}, column 'audio', file '{path}': ")


def test_random_bytes_named_wav(tmp_path: Path, pre: AudioPreprocessor) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=where(3, path) + r"cannot decode \.wav audio \(soundfile: .*; PyAV: .*\)"):
        load(pre, "noise.wav", tmp_path, row=3)


def test_header_only_wav(tmp_path: Path, pre: AudioPreprocessor) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(DataError, match=where(5, path) + r"\.wav audio has no samples"):
        load(pre, str(path), row=5)


def test_truncated_wav(tmp_path: Path, pre: AudioPreprocessor) -> None:
    sf.write(tmp_path / "full.wav", tone(1000, 16000, 0.5), 16000)
    path = tmp_path / "cut.wav"
    path.write_bytes((tmp_path / "full.wav").read_bytes()[:30])
    with pytest.raises(DataError, match=where(0, path) + r"cannot decode \.wav audio"):
        load(pre, "cut.wav", tmp_path)


def test_text_file_renamed_flac(tmp_path: Path, pre: AudioPreprocessor) -> None:
    path = tmp_path / "notes.flac"
    path.write_text("these are meeting notes, not a recording\n" * 20)
    with pytest.raises(DataError, match=where(2, path) + r"cannot decode \.flac audio.*no samples"):
        load(pre, "notes.flac", tmp_path, row=2)


def test_video_without_audio_track(tmp_path: Path, pre: AudioPreprocessor) -> None:
    path = tmp_path / "silent_film.mp4"
    write_with_pyav(path, "mp4", None, video=True)
    with pytest.raises(DataError, match=where(1, path) + r"file has no audio stream \(streams: video\)"):
        load(pre, "silent_film.mp4", tmp_path, row=1)


def test_missing_file(tmp_path: Path, pre: AudioPreprocessor) -> None:
    with pytest.raises(DataError, match=where(7, tmp_path / "gone.wav") + "file not found"):
        load(pre, "gone.wav", tmp_path, row=7)


def test_corrupt_bytes_name_the_record(pre: AudioPreprocessor) -> None:
    junk = np.random.default_rng(1).bytes(2048)
    with pytest.raises(DataError, match=re.escape("row 4, column 'audio', file 'clips/x.wav': cannot decode .wav audio")):
        load(pre, {"bytes": junk, "path": "clips/x.wav"}, row=4)
    with pytest.raises(DataError, match=re.escape("row 4, column 'audio', file '<2048 bytes>': cannot decode audio")):
        load(pre, junk, row=4)


def test_audio_noise_is_added_in_the_power_domain_at_the_requested_snr():
    power = torch.full((2, 8, 50), 4.0, dtype=torch.float64)
    batch = ModalityBatch(torch.log(power + LOG_EPS).float(), torch.tensor([True, False]), torch.arange(50).expand(2, 50) < 40)
    gen = torch.Generator().manual_seed(0)
    noisy = add_noise_at_snr(batch, 0.0, gen)
    added = noisy[0, :, :40].double().exp() - LOG_EPS - 4.0
    # 0 dB: mean noise power equals the clip's mean power (exponential fluctuation around it)
    assert added.mean().item() == pytest.approx(4.0, rel=0.1)
    assert (added > 0).all()
    assert torch.equal(noisy[0, :, 40:], batch.data[0, :, 40:])  # padded frames untouched
    assert torch.equal(noisy[1], batch.data[1])  # absent row untouched
    quiet = add_noise_at_snr(batch, 30.0, torch.Generator().manual_seed(0))
    assert (quiet[0, :, :40].double().exp() - LOG_EPS - 4.0).mean().item() == pytest.approx(0.004, rel=0.1)
    assert torch.equal(add_noise_at_snr(batch, math.inf, gen), batch.data)
    pre = AudioPreprocessor(["a"], n_mels=8, frames=50)
    assert torch.equal(pre.corrupt(batch, 0.0, torch.Generator().manual_seed(0)).data, noisy)  # the preprocessor's noise model
