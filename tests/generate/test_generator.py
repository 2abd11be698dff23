"""A tiny LM + a small image encoder learn one fixed caption per class; the Generator API around them."""

from __future__ import annotations

import json

import pytest
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.generate import Generator
from tessera.generate.config import GenerateConfig
from tessera.generate.generator import build_model, prepare_data
from tessera.generate.lm import load_causal_lm
from tessera.generate.train import fit_stage

CNN = {"name": "image_cnn", "options": {"dim": 32, "width": 8}, "trainable": True}
VIT = {"name": "image_vit", "options": {"dim": 32, "depth": 1, "heads": 2, "patch_size": 4}, "trainable": True}


def config(lm: dict, **sections) -> dict:
    base = {
        "data": {"input": "photo", "text": "caption", "options": {"size": 16}},
        "encoder": CNN,
        "projector": {"kind": "mlp", "options": {"tokens": 2}},
        "lm": lm,
        "chat": "none",
        "train": {"epochs": 20, "batch_size": 4, "lr": 3e-3},
    }
    return base | sections


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def lora_generator(tiny_gpt2, caption_table) -> Generator:
    """Stage 1 (projector + the from-scratch CNN) then stage 2 (LoRA on the GPT-2)."""
    frame, folder = caption_table
    cfg = config(
        {"source": str(tiny_gpt2)},
        lora={"r": 4, "alpha": 8},
        train={"epochs": 20, "lora_epochs": 5, "batch_size": 4, "lr": 3e-3, "lora_lr": 1e-3},
    )
    return Generator.fit(frame, cfg, base_dir=folder)


def test_learns_a_fixed_caption_per_class(lora_generator, caption_table):
    frame, folder = caption_table
    assert lora_generator.generate(list(frame.photo), base_dir=folder) == list(frame.caption)
    assert [h["stage"] for h in lora_generator.history] == ["projector"] * 20 + ["lora"] * 5
    assert lora_generator.history[19]["train_loss"] < lora_generator.history[0]["train_loss"]


def test_lora_touches_only_adapter_weights(lora_generator, tiny_gpt2):
    from peft import PeftModel

    lm = lora_generator.model.lm
    assert isinstance(lm, PeftModel)
    original, _ = load_causal_lm(tiny_gpt2)
    base = {k.replace("base_layer.", ""): v for k, v in lm.get_base_model().state_dict().items() if "lora_" not in k}
    assert base.keys() == original.state_dict().keys()
    for name, weight in original.state_dict().items():
        assert torch.equal(base[name], weight), name  # bit-identical
    adapters = {k: v for k, v in lm.state_dict().items() if "lora_B" in k}
    assert adapters and any(v.abs().sum() > 0 for v in adapters.values())  # lora_B starts at zero: it learned


def test_save_load_round_trips_greedy_outputs(lora_generator, caption_table, tiny_gpt2, tmp_path):
    frame, folder = caption_table
    prompts = ["", "What is this?", "Describe the picture in a few words."] * 4
    before = lora_generator.generate(list(frame.photo), prompt=prompts, base_dir=folder)
    path = lora_generator.save(tmp_path / "gen")
    assert sorted(p.name for p in path.iterdir()) == [
        "adapter",
        "generator.json",
        "model.pt",
    ]  # the base LM is referenced
    assert json.loads((path / "generator.json").read_text())["lm_source"] == str(tiny_gpt2.resolve())
    loaded = Generator.load(path)
    assert loaded.generate(list(frame.photo), prompt=prompts, base_dir=folder) == before


def test_streaming_yields_the_same_text(lora_generator, caption_table):
    frame, folder = caption_table
    for photo in frame.photo[::3]:
        pieces = list(lora_generator.stream(photo, base_dir=folder))
        assert len(pieces) > 1  # several pieces, not one block at the end
        assert "".join(pieces) == lora_generator.generate([photo], base_dir=folder)[0]


def test_batched_generation_equals_one_by_one(lora_generator, caption_table):
    frame, folder = caption_table
    prompts = ["", "What is this?", "Describe the picture in a few words."] * 4  # unequal lengths: left padding
    batched = lora_generator.generate(list(frame.photo), prompt=prompts, batch_size=12, base_dir=folder)
    single = [lora_generator.generate([p], prompt=q, base_dir=folder)[0] for p, q in zip(frame.photo, prompts)]
    assert batched == single


def test_kv_cache_does_not_change_greedy_output(lora_generator, caption_table):
    frame, folder = caption_table
    photos = list(frame.photo)
    cached = lora_generator.generate(photos, base_dir=folder, use_cache=True)
    assert lora_generator.generate(photos, base_dir=folder, use_cache=False) == cached


def test_sampling_is_seeded(lora_generator, caption_table):
    frame, folder = caption_table
    photos = list(frame.photo[:4])
    a = lora_generator.generate(photos, base_dir=folder, do_sample=True, temperature=2.0, top_p=0.95, seed=1)
    assert lora_generator.generate(photos, base_dir=folder, do_sample=True, temperature=2.0, top_p=0.95, seed=1) == a


def test_stage_one_trains_only_the_projector(tiny_llama, caption_table):
    frame, folder = caption_table
    cfg = GenerateConfig.from_dict(config({"source": str(tiny_llama)}, encoder={**CNN, "trainable": False}))
    pipeline, train, _ = prepare_data(frame, cfg, folder)
    lm, tokenizer = load_causal_lm(tiny_llama)
    model = build_model(cfg, pipeline, lm, tokenizer, "none")
    lm_before, encoder_before, projector_before = state(model.lm), state(model.encoder), state(model.projector)
    history = fit_stage(model, train, None, "projector", cfg.train, epochs=3, lr=3e-3, encoder_trainable=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for before, module in ((lm_before, model.lm), (encoder_before, model.encoder)):
        for name, value in module.state_dict().items():
            assert torch.equal(value, before[name]), name  # BatchNorm statistics included: frozen means eval mode
    assert any(not torch.equal(v, projector_before[k]) for k, v in model.projector.state_dict().items())


def test_resampler_over_vit_tokens(tiny_gpt2, caption_table):
    frame, folder = caption_table
    cfg = config(
        {"source": str(tiny_gpt2)}, encoder=VIT, projector={"kind": "resampler", "options": {"tokens": 2, "dim": 32}}
    )
    gen = Generator.fit(frame, cfg, base_dir=folder)
    assert gen.generate(list(frame.photo), base_dir=folder) == list(frame.caption)


def test_decoder_trained_from_scratch(caption_table, tmp_path):
    frame, folder = caption_table
    scratch = {"scratch": {"hidden": 32, "layers": 1, "heads": 2, "vocab_size": 300}}
    gen = Generator.fit(frame, config(scratch, train={"epochs": 40, "batch_size": 4, "lr": 0.01}), base_dir=folder)
    out = gen.generate(list(frame.photo), base_dir=folder)
    assert out == list(frame.caption)
    path = gen.save(tmp_path / "scratch")
    assert (path / "lm" / "model.safetensors").is_file()  # nothing to reference: the decoder is saved
    assert Generator.load(path).generate(list(frame.photo), base_dir=folder) == out


def test_text_only_generator(tiny_gpt2):
    gen = Generator.from_lm(tiny_gpt2, chat="none")
    [reply] = gen.generate(prompt="a blue square")
    assert reply.startswith("under the sky")  # the tiny LM has read the captions
    assert gen.chat([{"role": "user", "content": "a blue square"}]) == reply
    with pytest.raises(SchemaError, match="text-only"):
        gen.generate(["photo.png"])
    with pytest.raises(TesseraError, match="nothing of its own"):
        gen.save("unused")


def test_unreadable_input_names_its_position(lora_generator, caption_table, tmp_path):
    frame, folder = caption_table
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"row 1.*broken.png"):
        lora_generator.generate([str(folder / frame.photo[0]), str(tmp_path / "broken.png")])
    with pytest.raises(SchemaError, match="one prompt, or one per input"):
        lora_generator.generate(list(frame.photo[:2]), prompt=["a", "b", "c"], base_dir=folder)
    with pytest.raises(SchemaError, match="placeholder"):
        lora_generator.generate(list(frame.photo[:1]), prompt="<image> and <image>", base_dir=folder)


def test_missing_columns_and_empty_texts(tiny_gpt2, caption_table):
    frame, folder = caption_table
    with pytest.raises(SchemaError, match=r"data.text: column 'label' is not in"):
        Generator.fit(
            frame, config({"source": str(tiny_gpt2)}, data={"input": "photo", "text": "label"}), base_dir=folder
        )
    with pytest.raises(SchemaError, match="no non-empty text"):
        Generator.fit(frame.assign(caption=""), config({"source": str(tiny_gpt2)}), base_dir=folder)


def test_audio_tower_with_a_placeholder_in_the_prompt(tiny_gpt2, tmp_path):
    """Sound in, text out: the same model with an audio encoder; ``<audio>`` marks where the sound goes."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(2000) / 8000
    captions = {300: "a blue square under the sky", 1500: "a red square on a white wall"}  # what the tiny LM can say
    rows = []
    for i in range(8):
        hz = (300, 1500)[i % 2]
        sf.write(
            tmp_path / f"{i}.wav",
            (0.3 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32),
            8000,
        )
        rows.append({"sound": f"{i}.wav", "text": captions[hz]})
    frame = pd.DataFrame(rows)
    audio = {"sample_rate": 8000, "n_mels": 16, "n_fft": 256, "hop_length": 128, "max_seconds": 0.25}
    cfg = config(
        {"source": str(tiny_gpt2)},
        data={"input": "sound", "text": "text", "options": audio},
        prompt="Listen: <audio> What is it?",
        encoder={"name": "audio_cnn", "options": {"dim": 32, "width": 8, "arch": "v1"}, "trainable": True},  # v2 does not overfit 8 clips in this budget
    )
    gen = Generator.fit(frame, cfg, base_dir=tmp_path)
    assert gen.modality == "audio" and gen.model.placeholder == "<audio>"
    assert gen.generate(list(frame.sound), base_dir=tmp_path) == list(frame.text)
