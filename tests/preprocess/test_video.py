"""Video preprocessor on real files written with PyAV: sampling, padding, containers, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from tessera.errors import DataError, SchemaError
from tessera.preprocess import video as video_module
from tessera.preprocess.base import LoadContext, Preprocessor, load_located
from tessera.preprocess.image import IMAGENET_MEAN, IMAGENET_STD
from tessera.preprocess.video import VideoPreprocessor, pick_indices

STEP = 12  # frame i is a flat gray of level i * STEP, so a frame's brightness tells its index


def write_video(path: Path, num_frames: int, codec: str = "mpeg4", size: int = 32) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"} if codec == "mpeg4" else {"crf": "0"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), i * STEP, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_indices(data: np.ndarray) -> list[int]:
    """Recover each frame's source index from its brightness (undoing the default normalisation)."""
    px = (data * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]) * 255
    return [int(round(float(f.mean()) / STEP)) for f in px]


def load(pre: VideoPreprocessor, value, base_dir=None, row: int = 0):
    return load_located(pre, (value,), LoadContext(base_dir=None if base_dir is None else str(base_dir), row=row))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 20)


def test_pick_indices():
    assert pick_indices(20, 8) == [1, 3, 6, 8, 11, 13, 16, 18]
    assert pick_indices(8, 8) == list(range(8))
    assert pick_indices(3, 8) == [0, 1, 2]
    assert pick_indices(0, 8) == []
    for total in range(8, 60):
        picked = pick_indices(total, 8)
        assert len(set(picked)) == 8 and picked == sorted(picked) and picked[-1] < total


def test_shapes_and_uniform_sampling(clip):
    pre = VideoPreprocessor(["vid"], num_frames=8, size=16)
    sample = load(pre, clip)
    assert sample.data.shape == (8, 3, 16, 16) and sample.data.dtype == np.float32
    assert sample.mask.dtype == bool and sample.mask.all()
    assert frame_indices(sample.data) == pick_indices(20, 8)
    empty = pre.empty()
    assert empty.data.shape == (8, 3, 16, 16) and empty.mask.shape == (8,) and not empty.mask.any()


def test_container_without_frame_count_is_counted(tmp_path):
    path = write_video(tmp_path / "clip.mkv", 20)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska headers carry no frame count
    sample = load(VideoPreprocessor(["vid"], num_frames=5, size=8), path)
    assert frame_indices(sample.data) == pick_indices(20, 5)


def test_overstated_frame_count_is_corrected(clip, monkeypatch):
    monkeypatch.setattr(video_module, "count_frames", lambda source: 40)
    sample = load(VideoPreprocessor(["vid"], num_frames=8, size=8), clip)
    assert sample.mask.all() and frame_indices(sample.data) == pick_indices(20, 8)


def test_short_video_is_padded_and_masked(tmp_path):
    path = write_video(tmp_path / "short.mp4", 3, codec="libx264")
    sample = load(VideoPreprocessor(["vid"], num_frames=8, size=8), path)
    assert sample.mask.tolist() == [True] * 3 + [False] * 5
    assert frame_indices(sample.data[:3]) == [0, 1, 2]
    assert not sample.data[3:].any()


def test_grayscale_bytes_and_relative_inputs(clip):
    pre = VideoPreprocessor(["vid"], num_frames=4, size=8, channels=1)
    from_path = load(pre, clip.name, base_dir=clip.parent)
    assert from_path.data.shape == (4, 1, 8, 8)
    assert np.array_equal(load(pre, clip.read_bytes()).data, from_path.data)
    assert np.array_equal(load(pre, {"bytes": clip.read_bytes(), "path": "clip.mp4"}).data, from_path.data)
    assert load(pre, None) is None and load(pre, float("nan")) is None


def test_random_bytes_are_not_a_video(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError, match=r"row 4, column 'vid', file '.*noise\.mp4': not a readable video file"):
        load(VideoPreprocessor(["vid"]), "noise.mp4", base_dir=tmp_path, row=4)


@pytest.mark.parametrize(
    "keep, match",
    [
        (0.25, "not a readable video file"),
        # The MP4 index (moov) sits at the end: without it FFmpeg sees only an opaque data stream.
        (0.5, r"no video stream in the file \(streams found: data; the file may be truncated or not a video\)"),
    ],
)
def test_truncated_video_fails(tmp_path, clip, keep, match):
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match=rf"row 1, column 'vid', file '.*cut\.mp4': {match}"):
        load(VideoPreprocessor(["vid"]), tmp_path / "cut.mp4", row=1)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.zeros(1600, np.float32), 16000)
    expected = r"row 0, column 'vid', file '.*speech\.wav': no video stream in the file \(streams found: audio\)"
    with pytest.raises(DataError, match=expected):
        load(VideoPreprocessor(["vid"]), path)


def test_missing_file_and_url(tmp_path):
    with pytest.raises(DataError, match=r"row 2, column 'vid', file '.*gone\.mp4': file not found"):
        load(VideoPreprocessor(["vid"]), "gone.mp4", base_dir=tmp_path, row=2)
    with pytest.raises(DataError, match="URLs are not fetched"):
        load(VideoPreprocessor(["vid"]), "s3://bucket/a.mp4")


@pytest.mark.parametrize("options, match", [({"num_frames": 0}, "num_frames"), ({"resize": "zoom"}, "resize")])
def test_bad_options(options, match):
    with pytest.raises(SchemaError, match=match):
        VideoPreprocessor(["vid"], **options)


def test_state_round_trip_gives_identical_output(clip):
    pre = VideoPreprocessor(["vid"], num_frames=5, size=12, resize="pad", mean=[0.5] * 3, std=[0.25] * 3)
    again = Preprocessor.from_state(json.loads(json.dumps(pre.state_dict())))
    assert isinstance(again, VideoPreprocessor) and again.config() == pre.config()
    first, second = load(pre, clip), load(again, clip)
    assert np.array_equal(first.data, second.data) and np.array_equal(first.mask, second.mask)
