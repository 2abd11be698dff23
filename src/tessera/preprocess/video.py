"""Videos: decode with PyAV, sample a fixed number of frames uniformly, prepare each like an image.

Frames are decoded front to back rather than by seeking: seeking lands on keyframes and
is unreliable across containers, so sequential decoding is the only way to get exactly
the frames asked for. The soundtrack is ignored here (the audio preprocessor reads it).
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import av
import numpy as np
import pandas as pd
from PIL import Image

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource, is_missing, resolve_media
from tessera.preprocess.base import GAUSSIAN, DecodeCost, LoadContext, Preprocessor, Sample, register
from tessera.preprocess.image import check_image_options, image_uri, transform_image

# What one video is worth decoding (VideoPreprocessor.decode_budget): frames are decoded front to
# back up to the last one sampled, so the whole clip counts; 500 M pixels is ~20 s of 720p at 30 fps.
DECODE_MAX_PIXELS = 500_000_000


SOUND_PROBES = 5  # videos opened to see whether the column has a sound track


def pick_indices(total: int, num_frames: int) -> list[int]:
    """Centre of each of ``num_frames`` equal segments; all frames when there are fewer.

    Indices are distinct whenever ``total >= num_frames`` because segments are >= 1 frame long.
    """
    if total <= num_frames:
        return list(range(total))
    return [int((i + 0.5) * total / num_frames) for i in range(num_frames)]


def _open(source: MediaSource) -> av.container.InputContainer:
    try:
        if source.path is not None:
            return av.open(str(source.path), mode="r")
        return av.open(io.BytesIO(source.read_bytes()), mode="r")
    except av.error.FFmpegError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise DataError(f"not a readable video file ({reason})", file=source.label) from None


def _video_stream(container: av.container.InputContainer, source: MediaSource) -> av.video.stream.VideoStream:
    if not container.streams.video:
        found = sorted({s.type for s in container.streams})
        hint = "" if "audio" in found else "; the file may be truncated or not a video"
        raise DataError(
            f"no video stream in the file (streams found: {', '.join(found) or 'none'}{hint})", file=source.label
        )
    return container.streams.video[0]


def has_audio_stream(value: Any, base_dir: str | None) -> bool:
    """Whether a video cell's file holds an audio stream (False when it cannot be opened: inference only asks)."""
    try:
        with _open(resolve_media(value, base_dir)) as container:
            return bool(container.streams.audio)
    except DataError:
        return False


def count_frames(source: MediaSource) -> int:
    """Frame count from the container header, or by counting packets (cheap: nothing is decoded)."""
    with _open(source) as container:
        stream = _video_stream(container, source)
        if stream.frames > 0:
            return int(stream.frames)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as e:
            raise DataError(f"video data is corrupt: {e}", file=source.label) from None


def video_decode_cost(source: MediaSource, num_frames: int) -> DecodeCost:
    """The pixels :func:`read_frames` would decode: every frame up to the last one it samples, at the stream's size."""
    total = count_frames(source)
    with _open(source) as container:
        stream = _video_stream(container, source)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    decoded = max(pick_indices(total, num_frames), default=-1) + 1
    return DecodeCost(pixels=width * height * decoded, what=f"a {width}x{height} video of {total} frames")


def decode_frames(source: MediaSource, indices: Sequence[int]) -> tuple[list[Image.Image], int]:
    """The frames at ``indices`` (sorted) and how many frames were decoded before stopping."""
    wanted = set(indices)
    last = max(indices, default=-1)
    frames: list[Image.Image] = []
    decoded = 0
    with _open(source) as container:
        stream = _video_stream(container, source)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if decoded in wanted:
                    frames.append(frame.to_image())
                decoded += 1
                if decoded > last:
                    break
        except av.error.FFmpegError as e:
            raise DataError(f"video data is corrupt at frame {decoded}: {e}", file=source.label) from None
    return frames, decoded


def read_frames(source: MediaSource, num_frames: int) -> list[Image.Image]:
    """Up to ``num_frames`` uniformly spaced frames as RGB images.

    Header frame counts are occasionally too high (dropped or undecodable frames); when
    decoding ends before the chosen frames are reached, the true count is known by then
    and the frames are picked again from that.
    """
    total = count_frames(source)
    frames, decoded = decode_frames(source, pick_indices(total, num_frames))
    if len(frames) < min(num_frames, decoded):
        frames, decoded = decode_frames(source, pick_indices(decoded, num_frames))
    if not frames:
        raise DataError("video stream has no decodable frames", file=source.label)
    return frames


@register("video")
class VideoPreprocessor(Preprocessor):
    """One video per row -> float32 (num_frames, channels, size, size) and a bool frame mask.

    Videos shorter than ``num_frames`` are zero-padded at the end with mask False, so
    models can ignore the padding. Pixel options mean the same as for images.
    """

    default_encoder = "video_frames"
    media = True
    mime_types = ("video/",)
    extensions = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
    noise = GAUSSIAN  # on valid frames, in normalised pixel units as for images

    def __init__(
        self,
        columns: Sequence[str],
        num_frames: int = 8,
        size: int = 64,
        resize: str = "crop",
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(columns)
        if not isinstance(num_frames, int) or num_frames < 1:
            raise SchemaError(f"num_frames must be a positive integer, got {num_frames!r}")
        check_image_options(size, resize, channels, mean, std)
        self.num_frames = num_frames
        self.size = size
        self.resize = resize
        self.channels = channels
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]

    @classmethod
    def derived_inputs(cls, col: pd.Series, base_dir: str | None) -> list[tuple[str, str]]:
        """The sound track, when the sampled videos have one: the audio preprocessor reads it from the same files."""
        values = [v for v in col.tolist() if not is_missing(v)][:SOUND_PROBES]
        with_sound = sum(has_audio_stream(v, base_dir) for v in values)
        if values and with_sound >= 0.5 * len(values):
            return [("audio", f"the videos' sound track ({with_sound}/{len(values)} sampled files have an audio stream)")]
        return []

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        value = values[0]
        if is_missing(value):
            return None
        source = resolve_media(value, ctx.base_dir)
        sample = self.empty()
        for i, frame in enumerate(read_frames(source, self.num_frames)):
            sample.data[i] = transform_image(
                frame, size=self.size, resize=self.resize, channels=self.channels, mean=self.mean, std=self.std
            )
            sample.mask[i] = True
        return sample

    def empty(self) -> Sample:
        return Sample(
            data=np.zeros((self.num_frames, self.channels, self.size, self.size), dtype=np.float32),
            mask=np.zeros(self.num_frames, dtype=bool),
        )

    def encoder_facts(self) -> dict[str, Any]:
        return {"num_frames": self.num_frames, "in_channels": self.channels, "image_size": self.size}

    def decode_cost(self, data: bytes) -> DecodeCost:
        return video_decode_cost(MediaSource(data=data), self.num_frames)

    def decode_budget(self) -> DecodeCost:
        return DecodeCost(pixels=DECODE_MAX_PIXELS)

    def render(self, values: Sequence[Any], base_dir: str | None) -> dict[str, Any]:
        """The first frame, as a thumbnail."""
        if is_missing(values[0]):
            return {"kind": "missing"}
        return {"kind": "image", "src": image_uri(read_frames(resolve_media(values[0], base_dir), 1)[0])}

    def describe(self) -> str:
        return f"video({self.columns[0]}, {self.num_frames}x{self.channels}x{self.size}x{self.size}, {self.resize})"
