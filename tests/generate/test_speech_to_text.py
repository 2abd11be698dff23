"""Speech to text with the LM route: an audio tower and a decoder learnt on a few FSDD clips."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tessera.generate import Generator
from tessera.generate.config import load_config
from tessera.generate.metrics import word_error_rate

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "generate" / "asr_fsdd.yaml"


@pytest.mark.realdata
@pytest.mark.slow  # ~25 s on a busy 2-core machine
def test_the_asr_config_overfits_a_few_clips(shared_data, tmp_path):
    folder = shared_data / "fsdd" / "recordings"
    words = ["zero", "one", "two", "three", "four", "five"]
    rows = pd.DataFrame({"audio": [str(folder / f"{d}_jackson_7.wav") for d in range(6)], "transcript": words})
    cfg, _ = load_config(CONFIG)
    raw = cfg.to_dict()
    raw["data"] |= {"recipe": None, "split": None}
    raw["train"] |= {"epochs": 60, "batch_size": 6, "lr": 0.01}
    gen = Generator.fit(rows, raw)
    heard = gen.generate(rows["audio"].tolist())
    assert word_error_rate(words, heard) == 0.0, heard
    path = gen.save(tmp_path / "asr")
    assert Generator.load(path).generate(rows["audio"].tolist()) == heard
