"""Images: decode with Pillow, fix orientation and transparency, resize to a fixed square, normalise.

The same pixel pipeline (:func:`transform_image`) is used for video frames, so a model
that sees both images and videos gets identically prepared pixels from each.
"""

from __future__ import annotations

import base64
import io
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource, is_missing, resolve_media
from tessera.preprocess.base import GAUSSIAN, DecodeCost, LoadContext, Preprocessor, Sample, register

RESIZE_MODES = ("crop", "pad", "stretch")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESAMPLE = Image.Resampling.BILINEAR  # what torchvision uses by default; Pillow antialiases when shrinking
THUMBNAIL = 160  # pixels, longest side, of an image shown in a report

# Modes whose pixels may be (partly) transparent; they are flattened onto a background first.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# What one image is worth decoding (ImagePreprocessor.decode_budget): 64x the pixels the model
# keeps (8x its side), and never less than 2048x2048 (a screenshot or a scan). Past that a
# server refuses the file before decoding it. Measured on this project's 2-core machine (load ~9):
# a 2048x2048 RGBA PNG of noise decodes and resizes in 0.9 s and +54 MB; a 9400x9400 one took a
# worker 37 s and 2.1 GB (issue 18).
DECODE_RATIO = 64
DECODE_MIN_PIXELS = 2048 * 2048
KEEP_MIN_SIDE = 256  # ImagePreprocessor.compact keeps twice the model's size, and at least this
_LOSSY = ("JPEG", "MPO", "WEBP")


def check_image_options(
    size: int, resize: str, channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> None:
    """Validate pixel options at construction, so a bad config fails before any file is read."""
    if not isinstance(size, int) or size < 1:
        raise SchemaError(f"size must be a positive integer, got {size!r}")
    if resize not in RESIZE_MODES:
        raise SchemaError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if channels not in (1, 3):
        raise SchemaError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != channels:
            raise SchemaError(f"{name} needs {channels} value(s) for channels={channels}, got {list(values)}")
    if std is not None and any(s <= 0 for s in std):
        raise SchemaError(f"std values must be positive, got {list(std)}")


def default_norm(channels: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[list, list]:
    """ImageNet statistics for RGB (what pretrained backbones expect), 0.5/0.5 for grayscale."""
    if mean is None:
        mean = IMAGENET_MEAN if channels == 3 else (0.5,)
    if std is None:
        std = IMAGENET_STD if channels == 3 else (0.5,)
    return [float(m) for m in mean], [float(s) for s in std]


def _draft(img: Image.Image, draft_size: int | None) -> None:
    """Let a JPEG decode at a reduced scale (1/2 .. 1/8) that is still at least ``draft_size`` on both sides."""
    if draft_size is not None and img.format == "JPEG":
        img.draft(None, (draft_size, draft_size))


def image_decode_cost(source: MediaSource, draft_size: int | None = None) -> DecodeCost:
    """The pixels :func:`decode_image` would decode, from the header alone (after JPEG draft reduction)."""
    with source.open() as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)  # lazy: reads the header, decodes nothing
        except Image.DecompressionBombError:
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            return DecodeCost(pixels=limit + 1, what=f"an image of more than {limit} pixels")
        except UnidentifiedImageError:
            reason = "not a readable image (Pillow cannot identify the file format)"
            raise DataError(reason, file=source.label) from None
        except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ... on bad headers
            raise DataError(f"image header is corrupt: {type(e).__name__}: {e}", file=source.label) from None
        full = img.size
        _draft(img, draft_size)
        width, height = img.size
        what = f"a {full[0]}x{full[1]} {img.format or 'image'} ({img.mode})"
        if img.size != full:
            what += f", decoded at {width}x{height}"
        return DecodeCost(pixels=width * height, what=what)


def decode_image(source: MediaSource, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Open, size-check, fully decode and orient one image; every failure is a :class:`DataError`.

    The pixel count is checked from the header, before ``load()`` allocates anything, so a
    tiny file claiming 100k x 100k pixels is refused cheaply. Pillow has its own global
    guard (``Image.MAX_IMAGE_PIXELS``): its warning is turned into an error when it agrees
    with ``max_pixels`` and ignored when ``max_pixels`` deliberately allows more, but Pillow
    refuses images above twice its limit regardless. ``draft_size`` lets JPEGs decode at a
    reduced scale that is still at least that big on both sides (much faster for photos).
    Truncated files fail here because ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False.
    """
    label = source.label
    pil_limit = Image.MAX_IMAGE_PIXELS
    escalate = pil_limit is None or max_pixels <= pil_limit
    with source.open() as fh, warnings.catch_warnings():
        warnings.simplefilter("error" if escalate else "ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(
                    f"image is {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels} "
                    "(decompression bomb guard; raise max_pixels if the file is trusted)",
                    file=label,
                )
            _draft(img, draft_size)
            img.load()
            return ImageOps.exif_transpose(img)
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(
                f"image is too large to decode safely (decompression bomb guard): {e}", file=label
            ) from None
        except UnidentifiedImageError:
            raise DataError("not a readable image (Pillow cannot identify the file format)", file=label) from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ... on bad data
            kind = "truncated or corrupt" if "truncated" in str(e) else "corrupt"
            raise DataError(f"image data is {kind}: {type(e).__name__}: {e}", file=label) from None


def _to_8bit(img: Image.Image) -> Image.Image:
    """High-bit-depth grayscale (16-bit PNG/TIFF) scaled to 8 bits; Pillow's convert would clip at 255."""
    arr = np.asarray(img, dtype=np.float32)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def transform_image(
    img: Image.Image,
    *,
    size: int,
    resize: str,
    channels: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    alpha_background: int = 255,
) -> np.ndarray:
    """Pixels of one decoded image as float32 (channels, size, size), normalised by mean/std.

    Transparent pixels are composited onto an opaque gray of level ``alpha_background``
    (255 = white, like most viewers show them) before colour conversion; dropping alpha
    instead would expose whatever colour the encoder left under transparent areas.
    Letterbox padding uses the mean colour, so padded pixels come out as ~0 after normalising.
    """
    mean, std = default_norm(channels, mean, std)
    if img.mode.startswith(("I", "F")):
        img = _to_8bit(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (alpha_background,) * 3 + (255,))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("L" if channels == 1 else "RGB")

    target = (size, size)
    if resize == "crop":
        img = ImageOps.fit(img, target, method=RESAMPLE)
    elif resize == "pad":
        fill = tuple(int(round(m * 255)) for m in mean)
        img = ImageOps.pad(img, target, method=RESAMPLE, color=fill[0] if channels == 1 else fill)
    elif resize == "stretch":
        img = img.resize(target, RESAMPLE)
    else:
        raise SchemaError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")

    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    arr = (arr - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(arr, dtype=np.float32)


@register("image")
class ImagePreprocessor(Preprocessor):
    """One image per row (path, bytes or ``{bytes, path}``) -> float32 (channels, size, size).

    ``resize``: "crop" scales the shorter side to ``size`` and centre-crops (keeps aspect,
    may cut edges); "pad" letterboxes the whole image (keeps everything, wastes pixels);
    "stretch" ignores aspect. EXIF orientation is applied first, so phone photos are upright.
    Transparency policy: RGBA, LA and palette/colour-keyed images are composited onto an
    opaque gray of level ``alpha_background`` (default 255, white) before conversion.
    ``max_pixels`` refuses images larger than this (decompression bombs) before decoding.
    """

    default_encoder = "image_cnn"
    media = True
    mime_types = ("image/",)
    extensions = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
    noise = GAUSSIAN  # in normalised units: 1.0 is one channel std of the training images

    def __init__(
        self,
        columns: Sequence[str],
        size: int = 64,
        resize: str = "crop",
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        alpha_background: int = 255,
        max_pixels: int = 89_478_485,
    ) -> None:
        super().__init__(columns)
        check_image_options(size, resize, channels, mean, std)
        if not isinstance(alpha_background, int) or not 0 <= alpha_background <= 255:
            raise SchemaError(f"alpha_background must be an integer gray level 0..255, got {alpha_background!r}")
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise SchemaError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.size = size
        self.resize = resize
        self.channels = channels
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self.alpha_background = alpha_background
        self.max_pixels = max_pixels

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        value = values[0]
        if is_missing(value):
            return None
        source = resolve_media(value, ctx.base_dir)
        img = decode_image(source, self.max_pixels, draft_size=self.size)
        try:
            data = transform_image(
                img,
                size=self.size,
                resize=self.resize,
                channels=self.channels,
                mean=self.mean,
                std=self.std,
                alpha_background=self.alpha_background,
            )
        except (ValueError, OSError) as e:  # e.g. a colour mode Pillow cannot convert
            raise DataError(f"image cannot be converted ({img.mode} mode): {e}", file=source.label) from None
        return Sample(data=data)

    def empty(self) -> Sample:
        return Sample(data=np.zeros((self.channels, self.size, self.size), dtype=np.float32))

    def decode_cost(self, data: bytes) -> DecodeCost:
        return image_decode_cost(MediaSource(data=data), draft_size=self.size)

    def decode_budget(self) -> DecodeCost:
        return DecodeCost(pixels=min(self.max_pixels, max(DECODE_MIN_PIXELS, DECODE_RATIO * self.size * self.size)))

    def compact(self, data: bytes) -> bytes:
        """At most twice the model's size (at least 256 px), upright, no metadata: PNG, or JPEG (q95) from a lossy source."""
        side = max(KEEP_MIN_SIDE, 2 * self.size)
        source = MediaSource(data=data)
        with Image.open(io.BytesIO(data)) as probe:
            lossy = probe.format in _LOSSY
        img = decode_image(source, self.max_pixels, draft_size=side)
        img.thumbnail((side, side), RESAMPLE)
        buf = io.BytesIO()
        if lossy:
            img.convert("L" if img.mode in ("1", "L", "LA") else "RGB").save(buf, "JPEG", quality=95)
        else:
            img.save(buf, "PNG")
        return buf.getvalue()

    def encoder_facts(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.size}

    def render(self, values: Sequence[Any], base_dir: str | None) -> dict[str, Any]:
        if is_missing(values[0]):
            return {"kind": "missing"}
        img = decode_image(resolve_media(values[0], base_dir), max_pixels=self.max_pixels, draft_size=THUMBNAIL)
        return {"kind": "image", "src": image_uri(img)}

    def describe(self) -> str:
        return f"image({self.columns[0]}, {self.channels}x{self.size}x{self.size}, {self.resize})"


def image_uri(img: Image.Image) -> str:
    """A PNG thumbnail as a data URI, so a report and its JSON stand alone."""
    img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
