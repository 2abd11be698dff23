"""Image preprocessor on real files: orientation, transparency, modes, inputs, and every bad-file error."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tessera.errors import DataError, SchemaError
from tessera.media import MediaSource
from tessera.preprocess.base import LoadContext, Preprocessor, load_located
from tessera.preprocess.image import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor, decode_image, transform_image


def load(pre: ImagePreprocessor, value, base_dir=None, row: int = 0):
    return load_located(pre, (value,), LoadContext(base_dir=None if base_dir is None else str(base_dir), row=row))


def pixels(data: np.ndarray, channels: int = 3) -> np.ndarray:
    """Undo the default normalisation, back to 0..255 (C, H, W)."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    return (data * np.array(std)[:, None, None] + np.array(mean)[:, None, None]) * 255


def solid(path: Path, color, size=(40, 30), mode="RGB", **save) -> Path:
    Image.new(mode, size, color).save(path, **save)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG whose header claims width x height: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_shape_dtype_and_normalisation(tmp_path):
    pre = ImagePreprocessor(["img"], size=16)
    sample = load(pre, solid(tmp_path / "red.png", (255, 0, 0)))
    assert sample.data.shape == (3, 16, 16) and sample.data.dtype == np.float32 and sample.mask is None
    assert np.allclose(sample.data[0], (1 - 0.485) / 0.229, atol=1e-5)
    assert np.allclose(sample.data[1], (0 - 0.456) / 0.224, atol=1e-5)
    empty = pre.empty()
    assert empty.data.shape == (3, 16, 16) and empty.data.dtype == np.float32 and not empty.data.any()


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 tall, top half white. Orientation 6 = rotate 90 degrees clockwise to
    # display, so the viewer sees 20 wide x 40 tall with the white half on the right.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)

    assert decode_image(MediaSource(path=path), max_pixels=10**6).size == (20, 40)
    px = pixels(load(ImagePreprocessor(["img"], size=16, resize="stretch"), path).data)
    assert px[:, :, :6].mean() < 30 and px[:, :, -6:].mean() > 225  # left dark, right bright
    assert abs(px[:, :6].mean() - px[:, -6:].mean()) < 10  # top and bottom alike


def test_rgba_is_composited_on_background(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, but the left half fully transparent
    rgba[:, 10:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)

    white = pixels(load(ImagePreprocessor(["img"], size=20, resize="stretch"), path).data)
    assert np.allclose(white[:, :, :8], 255, atol=1)  # transparent red shows as white, not red
    assert np.allclose(white[:, :, -8:].T, [255, 0, 0], atol=1)
    black = pixels(load(ImagePreprocessor(["img"], size=20, resize="stretch", alpha_background=0), path).data)
    assert np.allclose(black[:, :, :8], 0, atol=1)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (12, 12), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    img.paste(1, (6, 0, 12, 12))
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)  # palette index 0 (blue) is transparent
    px = pixels(load(ImagePreprocessor(["img"], size=12, resize="stretch"), path).data)
    assert np.allclose(px[:, :, :5], 255, atol=1)
    assert np.allclose(px[:, :, -5:].T, [0, 255, 0], atol=1)


def test_grayscale_one_and_three_channels(tmp_path):
    path = solid(tmp_path / "gray.png", 200, mode="L")
    rgb = pixels(load(ImagePreprocessor(["img"], size=8), path).data)
    assert np.allclose(rgb, 200, atol=1e-3)
    gray = load(ImagePreprocessor(["img"], size=8, channels=1), path).data
    assert gray.shape == (1, 8, 8)
    assert np.allclose(gray, (200 / 255 - 0.5) / 0.5, atol=1e-5)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
    data = load(ImagePreprocessor(["img"], size=8, channels=1), path).data
    assert np.allclose(pixels(data, channels=1), 128, atol=1)


def test_crop_keeps_centre_and_pad_letterboxes(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = (0, 255, 0)
    wide[:, 10:30] = (255, 0, 0)
    wide[:, 30:] = (0, 0, 255)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)

    crop = pixels(load(ImagePreprocessor(["img"], size=10, resize="crop"), path).data)
    assert np.allclose(crop[:, :, 1:-1].reshape(3, -1).T, [255, 0, 0], atol=2)
    pad = load(ImagePreprocessor(["img"], size=10, resize="pad"), path).data
    assert np.abs(pad[:, :2]).max() < 0.02 and np.abs(pad[:, -2:]).max() < 0.02  # mean colour -> ~0
    assert pixels(pad)[:, 5, 5] == pytest.approx([255, 0, 0], abs=2)


def test_bytes_dict_and_relative_path_inputs_agree(tmp_path):
    path = tmp_path / "pics" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(path)
    pre = ImagePreprocessor(["img"], size=16)
    expected = load(pre, path).data
    raw = path.read_bytes()
    assert np.array_equal(load(pre, raw).data, expected)
    assert np.array_equal(load(pre, {"bytes": raw, "path": "a.png"}).data, expected)
    assert np.array_equal(load(pre, {"bytes": None, "path": "pics/a.png"}, base_dir=tmp_path).data, expected)
    assert np.array_equal(load(pre, "pics/a.png", base_dir=tmp_path).data, expected)


@pytest.mark.parametrize("value", [None, float("nan"), "", "  ", {"bytes": None, "path": None}])
def test_missing_values_return_none(value):
    assert load(ImagePreprocessor(["img"]), value) is None


def test_large_jpeg_draft_decode_stays_at_least_target_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path)
    img = decode_image(MediaSource(path=path), max_pixels=10**7, draft_size=64)
    assert min(img.size) >= 64 and img.size[0] < 800
    assert load(ImagePreprocessor(["img"], size=64), path).data.shape == (3, 64, 64)


# -- errors users see --------------------------------------------------------------------


def test_url_is_rejected():
    with pytest.raises(DataError, match=r"row 0, column 'img', file 'https://x\.org/a\.png': URLs are not fetched"):
        load(ImagePreprocessor(["img"]), "https://x.org/a.png")


def test_missing_file_names_row_column_and_file(tmp_path):
    with pytest.raises(DataError, match=r"row 3, column 'img', file '.*nope\.png': file not found") as err:
        load(ImagePreprocessor(["img"]), "nope.png", base_dir=tmp_path, row=3)
    assert err.value.row == 3 and err.value.column == "img" and err.value.file == str(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "name, content",
    [("noise.jpg", np.random.default_rng(2).bytes(2000)), ("notes.png", b"this is a text file, not a picture\n")],
)
def test_not_an_image(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=rf"row 5, column 'img', file '.*{name}': not a readable image"):
        load(ImagePreprocessor(["img"]), name, base_dir=tmp_path, row=5)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_fails(tmp_path, fmt):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=rf"row 1, column 'img', file '.*cut\.{fmt.lower()}': image data is truncated"):
        load(ImagePreprocessor(["img"]), path, row=1)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = png_header_only(tmp_path / "bomb.png", 10_000, 10_000)
    assert bomb.stat().st_size < 100
    bomb_error = r"row 2, column 'img', file '.*bomb\.png': image is too large .*decompression bomb"
    with pytest.raises(DataError, match=bomb_error):
        load(ImagePreprocessor(["img"]), bomb, row=2)
    huge = png_header_only(tmp_path / "huge.png", 20_000, 20_000)  # beyond Pillow's hard limit
    with pytest.raises(DataError, match=r"decompression bomb"):
        load(ImagePreprocessor(["img"], max_pixels=10**9), huge)


def test_max_pixels_option(tmp_path):
    path = solid(tmp_path / "small.png", (1, 2, 3), size=(20, 10))
    with pytest.raises(DataError, match=r"image is 20x10 = 200 pixels, more than max_pixels=100 \(decompression bomb"):
        load(ImagePreprocessor(["img"], max_pixels=100), path)
    assert load(ImagePreprocessor(["img"], max_pixels=200), path) is not None


@pytest.mark.parametrize(
    "options, match",
    [
        ({"resize": "zoom"}, "resize must be one of"),
        ({"channels": 4}, "channels must be 1"),
        ({"size": 0}, "size must be a positive integer"),
        ({"channels": 1, "mean": [0.1, 0.2, 0.3]}, "mean needs 1 value"),
        ({"std": [1, 0, 1]}, "std values must be positive"),
        ({"alpha_background": 300}, "alpha_background"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(SchemaError, match=match):
        ImagePreprocessor(["img"], **options)


def test_state_round_trip_gives_identical_output(tmp_path):
    path = solid(tmp_path / "rgba.png", (10, 200, 30, 128), mode="RGBA")
    pre = ImagePreprocessor(
        ["img"], size=12, resize="pad", channels=3, mean=[0.4, 0.4, 0.4], std=[0.2, 0.3, 0.4], alpha_background=0
    )
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, ImagePreprocessor) and again.config() == pre.config()
    assert np.array_equal(load(again, path).data, load(pre, path).data)


def test_transform_image_is_pure():
    img = Image.new("RGB", (30, 20), (10, 20, 30))
    kwargs = dict(size=8, resize="crop", channels=3, mean=None, std=None, alpha_background=255)
    out = transform_image(img, **kwargs)
    assert out.shape == (3, 8, 8) and np.array_equal(out, transform_image(img, **kwargs))
    assert img.size == (30, 20) and img.mode == "RGB"
