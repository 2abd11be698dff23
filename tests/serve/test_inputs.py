"""Media bombs under the size cap: refused from their header, in bounded time and memory, while normal media still work."""

from __future__ import annotations

import base64
import io
import os
import threading
import time

import pytest
from PIL import Image

from tests.serve.payloads import png
from tests.serve.test_app import assert_problem, image_bytes


class PeakRSS:
    """The most this process's resident memory grew by while the block ran (sampled every 5 ms from /proc)."""

    def __enter__(self) -> "PeakRSS":
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self._rss()
        self.peak, self._stop = self.start, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.grew_mb = (max(self.peak, self._rss()) - self.start) / 2**20

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads memory use from Linux /proc")


@needs_proc
def test_image_bombs_are_refused_from_their_header_in_bounded_time_and_memory(built, make_client) -> None:
    from tessera.preprocess.image import ImagePreprocessor

    client, headers = make_client()
    rgba = png(9400, 9400, "RGBA")  # ~340 KB; 353 MB of pixels (the attack took a worker to 2.1 GB and 37 s)
    one_bit = png(9000, 9000, "1")  # ~10 KB; 81 M pixels, under Pillow's own 89.5 M limit
    assert len(rgba) < 400_000 and len(one_bit) < 12_000
    assert 9000 * 9000 < ImagePreprocessor(["x"]).max_pixels  # what the decoder alone would have let through
    with PeakRSS() as mem:
        start = time.perf_counter()
        r = client.post("/v1/predict", files={"image": ("a.png", rgba, "image/png")}, headers=headers)
        body = assert_problem(r, 413, "9400x9400", "88,360,000 pixels")
        assert body["type"].endswith("/media_too_large")
        for route, files in [("/v1/embed", {"file": ("b.png", one_bit, "image/png")}),
                             ("/v1/search", {"file": ("b.png", one_bit, "image/png")})] + [
                                ("/v1/predict", {"image": ("b.png", one_bit, "image/png")})] * 16:
            assert_problem(client.post(route, files=files, headers=headers), 413, "9000x9000")
        b64 = {"query": [{"input": "image", "base64": base64.b64encode(one_bit).decode()}]}
        assert_problem(client.post("/v1/search", json=b64, headers=headers), 413, "81,000,000 pixels")
        elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"20 bombs took {elapsed:.2f} s"
    assert mem.grew_mb < 200, f"memory grew by {mem.grew_mb:.0f} MB"
    ok = client.post("/v1/predict", files={"image": ("ok.png", image_bytes(built), "image/png")}, headers=headers)
    assert ok.status_code == 200, ok.text


def test_a_large_image_within_the_budget_is_decoded(make_client) -> None:
    """2048x2048 is the floor of every image input's budget (a scan, a screenshot): it works."""
    client, headers = make_client()
    r = client.post("/v1/embed", files={"file": ("big.png", png(2048, 2048, "RGB"), "image/png")}, headers=headers)
    assert r.status_code == 200, r.text
    assert_problem(client.post("/v1/embed", files={"file": ("big.png", png(2049, 2048, "RGB"), "image/png")},
                               headers=headers), 413, "2049x2048")


def test_a_jpeg_counts_the_pixels_it_decodes_at_in_draft_mode(make_client) -> None:
    """A 4000x3000 photo decodes at 1/8 scale for a small model: 500x375 pixels, well within the budget."""
    client, headers = make_client()
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (200, 30, 30)).save(buf, "JPEG", quality=80)
    r = client.post("/v1/embed", files={"file": ("photo.jpg", buf.getvalue(), "image/jpeg")}, headers=headers)
    assert r.status_code == 200, r.text


def test_a_costly_client_is_rate_limited_before_a_cheap_one(built, make_client, keys_file) -> None:
    """Both keys may spend 20 units a minute; a 600x600 image costs 1 + 3.6 units, a 16x16 one barely more than 1."""
    from tessera.serve.auth import KeyStore

    client, _ = make_client()
    store = KeyStore(keys_file[0])
    costly = {"X-API-Key": store.add("costly", rate_per_minute=20)[1]}
    cheap = {"X-API-Key": store.add("cheap", rate_per_minute=20)[1]}
    big, small = png(600, 600, "RGB"), image_bytes(built)
    codes: dict[str, list[int]] = {"costly": [], "cheap": []}
    for _ in range(12):
        for name, key, data in (("costly", costly, big), ("cheap", cheap, small)):
            codes[name].append(client.post("/v1/embed", files={"file": ("x.png", data, "image/png")}, headers=key).status_code)
    assert codes["cheap"] == [200] * 12, codes
    # 20 -> 15.4 -> 10.8 -> 6.2 -> 1.6 -> -3.0 units: five admitted, then refused (refilling takes 12 s)
    assert codes["costly"][:5] == [200] * 5 and set(codes["costly"][5:]) == {429}, codes
    r = client.post("/v1/embed", files={"file": ("x.png", big, "image/png")}, headers=costly)
    assert_problem(r, 429, "units per minute")
    assert int(r.headers["retry-after"]) >= 1


def test_audio_over_its_budget_is_refused(make_client) -> None:
    """A clip is worth its crop at up to 96 kHz stereo; a 384 kHz 8-channel WAV header promises more."""
    import numpy as np
    import soundfile as sf

    client, headers = make_client()
    buf = io.BytesIO()
    sf.write(buf, np.zeros((38_400, 8), np.int16), 384_000, format="WAV", subtype="PCM_16")  # 0.1 s
    r = client.post("/v1/predict", files={"audio": ("a.wav", buf.getvalue(), "audio/wav")}, headers=headers)
    assert_problem(r, 413, "samples", "384000 Hz")
