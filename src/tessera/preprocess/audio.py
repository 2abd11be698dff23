"""Audio cells become fixed-size log-mel spectrograms, or fixed-length waveforms for pretrained towers.

Decoding tries libsndfile first because it is fast and exact for the common audio
files (wav, flac, ogg, mp3 on libsndfile >= 1.1); PyAV (FFmpeg) is the fallback so
that the audio track of video containers (mp4, webm, mkv) and anything else FFmpeg
knows also works. Every clip is mixed to mono and resampled to one rate so that
spectrogram frames mean the same thing for every row.

The mel filter bank uses the Slaney mel scale with Slaney area normalisation, the
librosa default, so features match what most pretrained audio models were trained on.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from typing import Any, Sequence

import numpy as np
import soundfile as sf
import soxr
import torch

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource, is_missing, resolve_media
from tessera.preprocess.base import DecodeCost, LoadContext, ModalityBatch, Noise, Preprocessor, Sample, register

LOG_EPS = 1e-6
LOG_FLOOR = math.log(LOG_EPS)  # value of a silent bin, and of padded frames when normalize="none"
NORMALIZE_CHOICES = ("none", "utterance")
# "waveform" hands pretrained towers the resampled mono samples themselves: each computes the
# features its weights were trained on (Whisper's log-mel, openWakeWord's mel, GE2E's mel).
REPRESENTATIONS = ("log_mel", "waveform")
REPORT_SECONDS = 5.0  # a report plays the first seconds of a clip
REPORT_RATE = 16000  # ... resampled down to this (enough to hear what is going on)
# What one clip is worth decoding (AudioPreprocessor.decode_budget): the crop the model keeps at
# up to 96 kHz in stereo. The decoder stops at the crop, so only the rate and channels can inflate it.
DECODE_MAX_RATE = 96_000
DECODE_MAX_CHANNELS = 2


# -- decoding ---------------------------------------------------------------------------
def decode_audio(source: MediaSource, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode to float32 ``(channels, samples)`` and the native sample rate.

    ``max_seconds`` stops decoding early, so hour-long recordings cost no more than the
    crop that is kept.
    """
    kind = f"{source.suffix} audio" if source.suffix else "audio"
    try:
        wave, sr = _decode_soundfile(source, max_seconds)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as sf_err:
        try:
            wave, sr = _decode_pyav(source, max_seconds)
        except DataError:
            raise
        except Exception as av_err:  # noqa: BLE001 - FFmpeg raises many types; the user needs one line
            raise DataError(
                f"cannot decode {kind} (soundfile: {_reason(sf_err)}; PyAV: {_reason(av_err)})", file=source.label
            ) from av_err
        if wave.shape[1] == 0:
            # FFmpeg picks a demuxer from the file name, so a text file called x.flac
            # "opens" and then yields nothing; soundfile's complaint is the useful one.
            raise DataError(
                f"cannot decode {kind}: no samples (soundfile: {_reason(sf_err)}; PyAV decoded no samples)",
                file=source.label,
            ) from sf_err
    if wave.shape[1] == 0:
        raise DataError(f"{kind} has no samples (header only or zero-length recording)", file=source.label)
    return wave, sr


def _decode_soundfile(source: MediaSource, max_seconds: float | None) -> tuple[np.ndarray, int]:
    with source.open() as fh, sf.SoundFile(fh) as f:
        frames = -1 if max_seconds is None else int(math.ceil(max_seconds * f.samplerate))
        data = f.read(frames=frames, dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(f.samplerate)


def _decode_pyav(source: MediaSource, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import av

    with source.open() as fh, av.open(fh, mode="r") as container:
        streams = container.streams.audio
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise DataError(f"file has no audio stream (streams: {', '.join(kinds)})", file=source.label)
        # Resampling to planar float gives (channels, samples) whatever the codec's sample format.
        resampler = None
        chunks: list[np.ndarray] = []
        sr, limit, total = 0, None, 0
        for frame in container.decode(streams[0]):
            if resampler is None:
                sr = frame.sample_rate
                limit = None if max_seconds is None else int(math.ceil(max_seconds * sr))
                resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=sr)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                total += chunks[-1].shape[1]
            if limit is not None and total >= limit:
                break
        if resampler is not None:
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), sr
    wave = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return np.ascontiguousarray(wave[:, :limit]), sr


def audio_header(source: MediaSource) -> tuple[float | None, int, int]:
    """(duration in seconds or None when the header does not say, sample rate, channels), decoding nothing."""
    try:
        with source.open() as fh:
            info = sf.info(fh)
        return (info.frames / info.samplerate if info.frames > 0 else None), int(info.samplerate), int(info.channels)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as sf_err:
        import av

        try:
            with source.open() as fh, av.open(fh, mode="r") as container:
                if not container.streams.audio:
                    raise DataError("file has no audio stream", file=source.label)
                stream = container.streams.audio[0]
                seconds = None
                if stream.duration is not None and stream.time_base is not None:
                    seconds = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    seconds = container.duration / 1_000_000
                return seconds, int(stream.sample_rate or 0), int(stream.channels or 0)
        except DataError:
            raise
        except Exception as av_err:  # noqa: BLE001 - FFmpeg raises many types
            raise DataError(f"cannot read the audio header (soundfile: {_reason(sf_err)}; PyAV: {_reason(av_err)})",
                            file=source.label) from av_err


def _reason(err: BaseException) -> str:
    """The decoder's own words without the file name it repeats (the DataError names the file)."""
    text = getattr(err, "error_string", None) or getattr(err, "strerror", None) or str(err)
    text = str(text).strip().rstrip(".") or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# -- signal helpers -----------------------------------------------------------------------
def to_mono(x: np.ndarray) -> np.ndarray:
    """Average the channels of ``(channels, samples)``; 1-D input is already mono."""
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    return x.mean(axis=0, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` with soxr's high-quality filter."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    if x.ndim == 1:
        return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out).astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(x.T, dtype=np.float32), sr_in, sr_out)
    return np.ascontiguousarray(out.T, dtype=np.float32)


@functools.lru_cache(maxsize=32)
def mel_filters(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised filters ``(n_mels, n_fft // 2 + 1)``; cached because every row reuses them."""
    from transformers.audio_utils import mel_filter_bank  # importing transformers is slow; only pay when needed

    fb = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=float(f_min),
        max_frequency=float(f_max if f_max is not None else sample_rate / 2),
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
        dtype=np.float32,
    )
    return torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))


def log_mel_spectrogram(
    wave: np.ndarray,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """Natural-log mel power spectrogram ``(n_mels, 1 + samples // hop_length)``.

    Frames are centred (hann window, zero padding at the edges, as librosa >= 0.10 does)
    so frame ``i`` describes the audio around sample ``i * hop_length``. ``log(mel + 1e-6)``
    keeps silence finite.
    """
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=torch.hann_window(n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.abs().pow(2)
    mel = mel_filters(n_fft, n_mels, sample_rate, f_min, f_max) @ power
    return torch.log(mel + LOG_EPS).numpy().astype(np.float32, copy=False)


# -- preprocessor ----------------------------------------------------------------------------
@register("audio")
class AudioPreprocessor(Preprocessor):
    """Audio file/bytes -> log-mel ``(n_mels, frames)`` plus a frame mask.

    With ``representation="waveform"`` the output is the mono waveform at ``sample_rate``
    instead, ``(max_seconds * sample_rate,)`` float32 in [-1, 1] zero-padded at the end, with
    a per-sample mask; the mel options are then unused.

    Clips longer than ``max_seconds`` (or ``frames * hop_length`` samples) keep their
    beginning. Shorter clips are padded: with ``normalize="none"`` padded frames hold the
    log floor ``log(1e-6)`` (what digital silence gives), with ``"utterance"`` they hold 0,
    the clip's mean after normalisation. ``"utterance"`` uses one mean and std over all
    mel bins of the real frames, which removes recording gain without distorting the
    spectral shape of short clips.
    """

    default_encoder = "audio_cnn"
    media = True
    # filetype reports some audio containers (MP4 audio, WebM, Ogg) as video or application; the decoders open them.
    mime_types = ("audio/", "video/mp4", "video/webm", "application/ogg")
    extensions = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".opus", ".aiff", ".aif"})
    noise = Noise("snr_db", (math.inf, 20.0, 10.0, 5.0, 0.0, -5.0))

    def __init__(
        self,
        columns: Sequence[str],
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 400,
        hop_length: int = 160,
        max_seconds: float = 10.0,
        frames: int | None = None,
        normalize: str = "none",
        representation: str = "log_mel",
    ) -> None:
        super().__init__(columns)
        for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels), ("n_fft", n_fft), ("hop_length", hop_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SchemaError(f"audio option {name} must be a positive integer, got {value!r}")
        if not max_seconds or max_seconds <= 0:
            raise SchemaError(f"audio option max_seconds must be positive, got {max_seconds!r}")
        if normalize not in NORMALIZE_CHOICES:
            raise SchemaError(f"audio option normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
        if representation not in REPRESENTATIONS:
            raise SchemaError(f"audio option representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if representation == "waveform" and normalize != "none":
            raise SchemaError("audio option normalize applies to log-mel spectrograms; use normalize: none with representation: waveform")
        if frames is None:
            frames = max(1, int(max_seconds * sample_rate) // hop_length)
        if not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0:
            raise SchemaError(f"audio option frames must be a positive integer, got {frames!r}")
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.max_seconds = float(max_seconds)
        self.frames = frames  # stored resolved, so encoders can read the output width directly
        self.normalize = normalize
        self.representation = representation

    @property
    def max_samples(self) -> int:
        return min(int(self.max_seconds * self.sample_rate), self.frames * self.hop_length)

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        value = values[0]
        if is_missing(value):
            return None
        source = resolve_media(value, ctx.base_dir)
        # Decode a little past the crop so the resampler has context at the cut.
        wave, sr = decode_audio(source, max_seconds=self.max_samples / self.sample_rate + 0.05)
        wave = resample(to_mono(wave), sr, self.sample_rate)[: self.max_samples]
        if wave.size == 0:
            raise DataError("audio has no samples", file=source.label)
        if self.representation == "waveform":
            return self._padded(wave, self.max_samples, 0.0)
        mel = log_mel_spectrogram(wave, self.sample_rate, self.n_fft, self.hop_length, self.n_mels)
        valid = min(mel.shape[1], self.frames)
        mel = mel[:, :valid]
        pad_value = LOG_FLOOR
        if self.normalize == "utterance":
            mel = (mel - mel.mean()) / max(float(mel.std()), 1e-5)
            pad_value = 0.0
        return self._padded(mel, self.frames, pad_value)

    def decode_cost(self, data: bytes) -> DecodeCost:
        """``load`` decodes up to the crop (plus 50 ms of resampler context), at the file's own rate and channels."""
        duration, rate, channels = audio_header(MediaSource(data=data))
        crop = self.max_samples / self.sample_rate + 0.05
        seconds = crop if duration is None else min(duration, crop)
        what = f"{'an' if duration is None else f'a {duration:.1f} s'} clip at {rate} Hz, {channels} channel(s)"
        return DecodeCost(samples=int(seconds * rate * max(channels, 1)), seconds=seconds, what=what)

    def decode_budget(self) -> DecodeCost:
        crop = self.max_samples / self.sample_rate + 0.05
        return DecodeCost(samples=int(crop * DECODE_MAX_RATE * DECODE_MAX_CHANNELS))

    def compact(self, data: bytes) -> bytes:
        """The crop the model hears (mono, at its sample rate) as 16-bit FLAC."""
        source = MediaSource(data=data)
        wave, sr = decode_audio(source, max_seconds=self.max_samples / self.sample_rate + 0.05)
        wave = resample(to_mono(wave), sr, self.sample_rate)[: self.max_samples]
        buf = io.BytesIO()
        sf.write(buf, np.clip(wave, -1.0, 1.0), self.sample_rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()

    @staticmethod
    def _padded(x: np.ndarray, length: int, pad_value: float) -> Sample:
        """``x`` (..., valid) padded along its last axis to ``length``, with the mask of valid positions."""
        valid = x.shape[-1]
        data = np.full(x.shape[:-1] + (length,), pad_value, dtype=np.float32)
        data[..., :valid] = x
        mask = np.zeros(length, dtype=bool)
        mask[:valid] = True
        return Sample(data=data, mask=mask)

    def empty(self) -> Sample:
        if self.representation == "waveform":
            return Sample(data=np.zeros(self.max_samples, dtype=np.float32), mask=np.zeros(self.max_samples, dtype=bool))
        return Sample(
            data=np.zeros((self.n_mels, self.frames), dtype=np.float32),
            mask=np.zeros(self.frames, dtype=bool),
        )

    def encoder_facts(self) -> dict[str, Any]:
        if self.representation == "waveform":
            return {"samples": self.max_samples, "sample_rate": self.sample_rate}
        return {"n_mels": self.n_mels, "frames": self.frames}

    def corrupt(self, batch: ModalityBatch, level: float, generator: torch.Generator) -> ModalityBatch:
        """Noise at a signal-to-noise ratio of ``level`` dB, in the representation's own domain."""
        if self.representation == "waveform":
            return ModalityBatch(add_waveform_noise_at_snr(batch, level, generator), batch.present, batch.mask)
        return ModalityBatch(add_noise_at_snr(batch, level, generator, self.normalize), batch.present, batch.mask)

    def render(self, values: Sequence[Any], base_dir: str | None) -> dict[str, Any]:
        if is_missing(values[0]):
            return {"kind": "missing"}
        return {"kind": "audio", "src": audio_uri(resolve_media(values[0], base_dir))}

    def describe(self) -> str:
        if self.representation == "waveform":
            return f"audio({self.columns[0]}: {self.sample_rate} Hz waveform, {self.max_samples} samples)"
        return (
            f"audio({self.columns[0]}: {self.sample_rate} Hz, {self.n_mels} mels x {self.frames} frames, "
            f"hop {self.hop_length})"
        )


def add_noise_at_snr(batch: ModalityBatch, snr_db: float, generator: torch.Generator, normalize: str = "none") -> torch.Tensor:
    """Log-mel ``(B, n_mels, frames)`` with noise added in the power domain at ``snr_db``; absent rows and padding untouched.

    The data hold natural-log mel power ``log(mel + 1e-6)``, so noise is added to the power
    ``exp(logmel) - 1e-6``: the clip's power is its mean over valid frames and mel bins, the
    noise power is that over ``10^(snr/10)``, flat across mel bins (white noise through
    area-normalised Slaney filters is about flat) with exponential per-bin fluctuation (the
    periodogram of Gaussian noise); then the log is taken again. With ``normalize="utterance"``
    the z-scored values are treated as log power and re-normalised afterwards, which is an
    approximation (the original scale is lost).
    """
    if math.isinf(snr_db) and snr_db > 0:
        return batch.data
    logmel = batch.data.double()
    frames = batch.mask if batch.mask is not None else torch.ones(logmel.shape[0], logmel.shape[-1], dtype=torch.bool)
    valid = (frames & batch.present.unsqueeze(1)).unsqueeze(1).expand_as(logmel)  # (B, n_mels, frames)
    power = (logmel.exp() - LOG_EPS).clamp_min(0.0)
    counts = valid.sum((1, 2)).clamp_min(1)
    clip_power = torch.where(valid, power, 0.0).sum((1, 2)) / counts
    noise_power = clip_power / 10.0 ** (snr_db / 10.0)
    fluctuation = torch.empty(logmel.shape, dtype=torch.float64).exponential_(1.0, generator=generator)
    noisy = torch.log(power + noise_power.view(-1, 1, 1) * fluctuation + LOG_EPS)
    if normalize == "utterance":
        mean = torch.where(valid, noisy, 0.0).sum((1, 2)) / counts
        var = torch.where(valid, (noisy - mean.view(-1, 1, 1)) ** 2, 0.0).sum((1, 2)) / counts
        noisy = (noisy - mean.view(-1, 1, 1)) / var.sqrt().clamp_min(1e-5).view(-1, 1, 1)
    return torch.where(valid, noisy, logmel).to(batch.data.dtype)


def add_waveform_noise_at_snr(batch: ModalityBatch, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """Waveforms ``(B, samples)`` plus white Gaussian noise at ``snr_db`` of each clip's power (valid samples only)."""
    if math.isinf(snr_db) and snr_db > 0:
        return batch.data
    wave = batch.data.double()
    valid = batch.mask if batch.mask is not None else torch.ones_like(wave, dtype=torch.bool)
    valid = valid & batch.present.unsqueeze(1)
    power = torch.where(valid, wave**2, 0.0).sum(1) / valid.sum(1).clamp_min(1)
    std = (power / 10.0 ** (snr_db / 10.0)).sqrt()
    noise = torch.randn(wave.shape, generator=generator, dtype=torch.float64) * std.unsqueeze(1)
    return torch.where(valid, wave + noise, wave).to(batch.data.dtype)


def audio_uri(source: MediaSource) -> str:
    """The clip's first seconds, mono, at most 16 kHz, as a 16-bit WAV data URI (every browser plays it)."""
    wave, sr = decode_audio(source, max_seconds=REPORT_SECONDS)
    wave = to_mono(wave)
    if sr > REPORT_RATE:
        wave, sr = resample(wave, sr, REPORT_RATE), REPORT_RATE
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave[: int(REPORT_SECONDS * sr)], -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
