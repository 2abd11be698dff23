"""The HTML report really renders in a browser: headless Chromium takes a screenshot and dumps the DOM."""

import shutil
import subprocess

import pytest

from tessera.evaluate.report import SECTIONS
from tessera.evaluate.run import evaluate_predictor
from tessera.evaluate.report import write_report
from tessera.predictor import Predictor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs Debian's chromium)")
def test_report_renders_in_headless_chromium(tiny_table, tiny_schema, tmp_path):
    predictor = Predictor(model={"dim": 16}, train={"epochs": 2, "batch_size": 16}).fit(tiny_table, schema=tiny_schema)
    results = evaluate_predictor(predictor, tiny_table, group_columns=["color"], n_boot=50)
    json_path = tmp_path / "results.json"
    write_report(results, json_path)
    page = json_path.with_suffix(".html").resolve()
    profile = tmp_path / "profile"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]

    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], check=True, capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a real page, not a blank frame

    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    assert dom.count("<img") >= 3 and "<audio" in dom
