"""Training data for a generator: each distinct input decoded once, a frozen encoder run once, the reply loss."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tessera.generate.config import GenerateConfig
from tessera.generate.generator import build_model, prepare_data
from tessera.generate.lm import load_causal_lm
from tessera.generate.model import Encoded
from tessera.generate.train import encode_once, fit_stage

from .conftest import PROMPT


def config(lm_folder, trainable: bool) -> GenerateConfig:
    return GenerateConfig.from_dict(
        {
            "data": {"input": "photo", "text": "caption", "options": {"size": 16}},
            "prompt": PROMPT,
            "encoder": {"name": "image_cnn", "options": {"dim": 32, "width": 8}, "trainable": trainable},
            "projector": {"kind": "mlp", "options": {"tokens": 2}},
            "lm": {"source": str(lm_folder)},
            "chat": "none",
            "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3},
        }
    )


@pytest.fixture
def five_captions_each(caption_table) -> pd.DataFrame:
    frame, _ = caption_table
    return pd.concat([frame.assign(caption=frame.caption + f" {i}") for i in range(5)], ignore_index=True)


def test_an_input_with_several_texts_is_decoded_once(tiny_gpt2, caption_table, five_captions_each):
    _, folder = caption_table
    cfg = config(tiny_gpt2, trainable=True)
    _, train, _ = prepare_data(five_captions_each, cfg, folder)
    assert len(train) == 60 and len(train.media) == 12
    media, _, answers = next(train.batches(60))
    assert answers == five_captions_each.caption.tolist()
    for i in range(60):  # row i shows photo i % 12, decoded once
        assert torch.equal(media.data[i], train.media.data[i % 12])



def test_the_split_column_decides_training_and_validation_rows(tiny_gpt2, caption_table, five_captions_each):
    """Preparation goes through tessera.prepare: test rows are never read, val rows come back paired."""
    _, folder = caption_table
    photos = five_captions_each.photo.unique()
    split = {p: "train" if i < 8 else "val" if i < 10 else "test" for i, p in enumerate(photos)}
    rows = five_captions_each.assign(split=five_captions_each.photo.map(split))
    raw = config(tiny_gpt2, trainable=True).to_dict()
    raw["data"]["split"] = "split"
    _, train, val = prepare_data(rows, GenerateConfig.from_dict(raw), folder)
    assert (len(train.media), len(train), len(val.media), len(val)) == (8, 40, 2, 10)
    assert set(val.answers) == set(rows[rows.split == "val"].caption)

def test_a_frozen_encoder_runs_once_per_input_and_training_reads_its_output(
    tiny_gpt2, caption_table, five_captions_each
):
    _, folder = caption_table
    cfg = config(tiny_gpt2, trainable=False)
    pipeline, train, _ = prepare_data(five_captions_each, cfg, folder)
    lm, tokenizer = load_causal_lm(tiny_gpt2)
    model = build_model(cfg, pipeline, lm, tokenizer, "none")
    calls = []
    model.encoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    encoded = encode_once(model, train)
    assert isinstance(encoded.media, Encoded) and sum(calls) == 12 and encoded.media.tokens.shape[:2] == (12, 1)
    fit_stage(model, encoded, None, "projector", cfg.train, epochs=2, lr=3e-3, encoder_trainable=False)
    assert sum(calls) == 12  # training read the stored output
    media, prompts, answers = next(train.batches(8))
    model.eval()
    with torch.no_grad():
        from_batch = model.loss(media, prompts, answers)
        from_encoded = model.loss(model.encode(media), prompts, answers)
    assert torch.allclose(from_batch, from_encoded)


def test_reply_loss_on_kept_logits_equals_the_lms_own(tiny_llama, caption_table):
    frame, folder = caption_table
    cfg = config(tiny_llama, trainable=False)
    pipeline, train, _ = prepare_data(frame, cfg, folder)
    lm, tokenizer = load_causal_lm(tiny_llama)
    model = build_model(cfg, pipeline, lm, tokenizer, "none").eval()
    media, prompts, answers = next(train.batches(6))
    answers = [a if i % 2 else a + " and more words here" for i, a in enumerate(answers)]  # replies of unequal length
    with torch.no_grad():
        ours = model.loss(media, prompts, answers)
        replies = [model.reply_ids(a, 64) for a in answers]
        inputs, mask, labels = model.assemble(model.prefix(media), prompts, replies, left_pad=False)
        theirs = model.lm(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss
    assert torch.allclose(ours, theirs, atol=1e-5)
