"""The one-pass speech decoder: it learns each word's spectrogram, composes word and speaker, saves, loads and serves."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tessera.errors import SchemaError, TesseraError
from tessera.generate.diffusion import TextConditioner
from tessera.generate.speech import (
    FRAMES,
    HOP,
    N_MELS,
    SAMPLE_RATE,
    Text2SpeechConfig,
    Text2SpeechDecoderConfig,
    load_config,
    load_generator,
    speak,
    train_data,
)
from tessera.generate.speech_decoder import DecoderSettings, DecoderTrainSettings, SpeechDecoder, train_decoder

WORDS3 = {1: 10, 2: 30, 3: 50}  # digit -> the mel band its fake "word" sits on


def fake_mel(digit: int, speaker: str, take: int) -> np.ndarray:
    """A fake log-mel image: a voiced stretch (frames 5-30) with a loud band (the word); bob's upper bands are louder throughout."""
    rng = np.random.default_rng(100 * digit + 10 * take + (speaker == "bob"))
    image = np.full((N_MELS, FRAMES), -1.0, np.float32)
    band = WORDS3[digit]
    image[:, 5:30] = -0.2
    image[band - 3 : band + 3, 5:30] = 0.8
    image[:, 5:30] += rng.normal(0, 0.05, (N_MELS, 25)).astype(np.float32)
    if speaker == "bob":
        image[N_MELS // 2 :] += 0.3  # (a noisier microphone: his silence too)
    return image.clip(-1, 1)


@pytest.fixture(scope="module")
def tiny_decoder(minilm) -> tuple[SpeechDecoder, dict]:
    """Three words x two speakers x three takes of fake spectrograms; ("bob", 3) is never seen in training."""
    torch.set_num_threads(1)
    meta = pd.DataFrame([{"speaker": s, "digit": d, "take": t} for s in ("ann", "bob") for d in WORDS3 for t in range(3)])
    images = [fake_mel(d, s, t) for s, d, t in zip(meta["speaker"], meta["digit"], meta["take"])]
    data = train_data(meta, images, heldout=[("bob", 3)])
    decoder = train_decoder(data, TextConditioner(minilm), DecoderSettings(hidden=(128,), dropout=0.0),
                            DecoderTrainSettings(steps=800, batch_size=16, lr=3e-3, warmup=10), log=lambda _: None)
    decoder.meta.update({"task": "text2speech", "sample_rate": SAMPLE_RATE})
    means = {(s, d): np.mean([im for im, s2, d2 in zip(images, meta["speaker"], meta["digit"]) if (s2, d2) == (s, d)], axis=0)
             for s in ("ann", "bob") for d in WORDS3}
    return decoder, means


def test_decoder_reproduces_each_word_better_than_the_other_words(tiny_decoder):
    decoder, means = tiny_decoder
    from tessera.generate.speech import WORDS

    for speaker in ("ann", "bob"):
        drawn = decoder.sample([WORDS[d] for d in WORDS3], labels=speaker)[:, 0].numpy()
        for image, digit in zip(drawn, WORDS3):
            errors = {d: float(np.abs(image - means[(speaker, d)]).mean()) for d in WORDS3}
            assert min(errors, key=errors.get) == digit, (speaker, digit, errors)
            assert errors[digit] < 0.5 * min(e for d, e in errors.items() if d != digit)


def test_the_speaker_offset_composes_with_a_word_never_heard_from_that_speaker(tiny_decoder):
    decoder, means = tiny_decoder
    bob, ann = decoder.sample(["three", "three"], labels=["bob", "ann"])[:, 0].numpy()
    upper = slice(N_MELS // 2, None)
    # ("bob", 3) was held out: bob's louder upper bands come from his other words, the band of "three" from ann.
    assert bob[upper].mean() > ann[upper].mean() + 0.1
    assert np.abs(bob - means[("bob", 3)]).mean() < np.abs(bob - means[("ann", 3)]).mean()


def test_samples_are_deterministic_and_errors_are_clear(tiny_decoder):
    decoder, _ = tiny_decoder
    x = decoder.sample("one", 3, labels="ann", guidance=3.0, steps=50, seed=1)  # the diffusion options change nothing
    assert x.shape == (3, 1, N_MELS, FRAMES) and torch.equal(x[0], x[2]) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(decoder.sample("one", labels="ann", seed=2)[0], x[0])
    with torch.no_grad():  # no speaker (-1): the mean of the speakers' offsets (compared before the clamp to [-1, 1])
        none, ann, bob = decoder.net(decoder.text(["one"] * 3), torch.tensor([-1, 0, 1]))
    assert torch.allclose(none, (ann + bob) / 2, atol=1e-5) and not torch.allclose(ann, bob, atol=1e-2)
    assert decoder.sample("one").shape == (1, 1, N_MELS, FRAMES)
    with pytest.raises(TesseraError, match=r"unknown label\(s\) \['carol'\]; this model knows \['ann', 'bob'\]"):
        decoder.sample("one", labels="carol")
    with pytest.raises(TesseraError, match="n must be a positive integer"):
        decoder.sample("one", 0)
    with pytest.raises(TesseraError, match="non-empty string"):
        decoder.sample([""])


def test_save_load_round_trips_the_same_output(tiny_decoder, tmp_path):
    decoder, _ = tiny_decoder
    decoder.save(tmp_path / "voice")
    assert json.loads((tmp_path / "voice" / "generator.json").read_text())["meta"]["task"] == "text2speech"
    again = load_generator(tmp_path / "voice", text=decoder.text)
    assert isinstance(again, SpeechDecoder) and again.label_names == ["ann", "bob"]
    prompts = ["one", "say two", "the number three"]
    assert torch.equal(again.sample(prompts, labels="bob"), decoder.sample(prompts, labels="bob"))
    waves = speak(again, ["two"], 1, speaker="ann")
    assert len(waves) == 1 and waves[0].dtype == np.float32 and abs(len(waves[0]) - FRAMES * HOP) <= HOP
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "generator.json").write_text(json.dumps({"format": "something/9"}))
    with pytest.raises(TesseraError, match=r"has format 'something/9'"):
        load_generator(tmp_path / "other")
    with pytest.raises(TesseraError, match="not a saved generator folder"):
        load_generator(tmp_path / "missing")


def test_a_speech_config_has_a_decoder_or_a_model_section():
    assert isinstance(load_config({"decoder": {}}, "s.yaml"), Text2SpeechDecoderConfig)
    assert isinstance(load_config({"model": {}}, "s.yaml"), Text2SpeechConfig)
    with pytest.raises(SchemaError, match=r"s.yaml: give 'decoder' .* or 'model' .*, not both"):
        load_config({"decoder": {}, "model": {}}, "s.yaml")
    with pytest.raises(SchemaError, match=r"s.yaml: say which generator to train: a 'decoder' section"):
        load_config({"data": {}}, "s.yaml")
    with pytest.raises(SchemaError, match=r"decoder.hidden: .*at least 1 item"):
        load_config({"decoder": {"hidden": []}}, "s.yaml")
    with pytest.raises(SchemaError, match=r"train.ema_decay: Extra inputs are not permitted"):
        load_config({"decoder": {}, "train": {"ema_decay": 0.9}}, "s.yaml")  # a diffusion setting, not a decoder one


def test_the_example_configs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs" / "generate"
    for name, kind in (("text2speech_fsdd", Text2SpeechDecoderConfig), ("text2speech_fsdd_diffusion", Text2SpeechConfig)):
        path = folder / f"{name}.yaml"
        cfg = load_config(yaml.safe_load(path.read_text()), str(path), folder)
        assert isinstance(cfg, kind) and Path(cfg.output).name == name


def test_the_cli_speaks_with_a_saved_decoder(tiny_decoder, tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from tessera.cli import app

    decoder, _ = tiny_decoder
    decoder.save(tmp_path / "voice")
    out = tmp_path / "three.wav"
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "voice"), "--prompt", "three", "--speaker", "bob",
                                      "--n", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    wave, rate = sf.read(out, dtype="float32")
    assert rate == SAMPLE_RATE and abs(len(wave) - FRAMES * HOP) <= HOP and np.abs(wave).max() > 0.1


def test_the_server_speaks_with_a_saved_decoder(tiny_decoder, tmp_path):
    import soundfile as sf
    from fastapi.testclient import TestClient

    from tessera.serve import ServeConfig, create_app
    from tessera.serve.auth import KeyStore
    from tessera.serve.generators import load_generators

    decoder, _ = tiny_decoder
    decoder.save(tmp_path / "tiny-decoder")
    generators = load_generators(speech=[tmp_path / "tiny-decoder"])
    _, key = KeyStore(tmp_path / "keys.json").add("tests")
    app = create_app(ServeConfig(keys_file=tmp_path / "keys.json", feedback_db=str(tmp_path / "feedback.db")),
                     generators=generators)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {key}"}
        models = client.get("/v1/models", headers=headers).json()["data"]
        assert [(m["id"], m["kind"], m["voices"]) for m in models] == [("tiny-decoder", "speech", ["ann", "bob"])]
        reply = client.post("/v1/audio/speech", headers=headers,
                            json={"model": "tiny-decoder", "input": "two", "voice": "ann", "response_format": "wav"})
        assert reply.status_code == 200, reply.text
        wave, rate = sf.read(io.BytesIO(reply.content), dtype="float32")
        assert rate == SAMPLE_RATE and abs(len(wave) - FRAMES * HOP) <= HOP
        bad = client.post("/v1/audio/speech", headers=headers, json={"model": "tiny-decoder", "input": "two", "voice": "carol"})
        assert bad.status_code == 400 and "not one of this model's speakers" in bad.text
    with pytest.raises(TesseraError, match="is a speech model .*serve it with --speech-generator"):
        load_generators(images=[tmp_path / "tiny-decoder"])


def test_the_speaker_can_also_be_an_input_of_the_network(tiny_decoder, tmp_path):
    decoder, _ = tiny_decoder
    meta = pd.DataFrame([{"speaker": s, "digit": d} for s in ("ann", "bob") for d in WORDS3])
    data = train_data(meta, [fake_mel(d, s, 0) for s, d in zip(meta["speaker"], meta["digit"])], heldout=[])
    settings = DecoderSettings(hidden=(32,), speaker_offsets="off", speaker_input=True)
    voice = train_decoder(data, decoder.text, settings, DecoderTrainSettings(steps=30, batch_size=4), log=lambda _: None)
    assert voice.net.speaker is None and voice.label_names == ["ann", "bob"]
    ann, bob = voice.sample(["one", "one"], labels=["ann", "bob"])
    assert not torch.equal(ann, bob)
    voice.save(tmp_path / "v")
    again = load_generator(tmp_path / "v", text=decoder.text)
    assert torch.equal(again.sample(["one", "one"], labels=["ann", "bob"]), torch.stack([ann, bob]))
    plain = train_decoder(data, decoder.text, DecoderSettings(hidden=(32,), speaker_offsets="off"),
                          DecoderTrainSettings(steps=5, batch_size=4), log=lambda _: None)
    with pytest.raises(TesseraError, match="takes no extra label"):
        plain.sample("one", labels="ann")
