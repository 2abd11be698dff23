"""Tiny language models built and "pretrained" here, and a table of synthetic images with one caption per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

CAPTIONS = {
    "red": "a red square on a white wall",
    "green": "a green square in the grass",
    "blue": "a blue square under the sky",
    "yellow": "a yellow square in the sun",
}
COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (220, 220, 30)}
PROMPT = "Describe the picture."


def write_images(folder: Path, per_class: int = 3, seed: int = 0) -> pd.DataFrame:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, rgb in COLORS.items():
        for i in range(per_class):
            pixels = (np.asarray(rgb) + rng.integers(-25, 25, (16, 16, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i}.png")
            rows.append({"photo": f"{name}{i}.png", "caption": CAPTIONS[name], "color": name})
    return pd.DataFrame(rows)


def build_tiny_lm(folder: Path, arch: str = "gpt2", steps: int = 150, seed: int = 0) -> Path:
    """A ~100k-parameter causal LM that has read the captions (so it "knows the language"), saved like a checkpoint."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from tessera.generate.lm import train_tokenizer

    torch.manual_seed(seed)
    texts = list(CAPTIONS.values()) + [PROMPT]
    tok = train_tokenizer(texts * 4, vocab_size=300)
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_embd=64,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        lm = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        lm = LlamaForCausalLM(cfg)
    captions = [tok(t).input_ids[1:] + [tok.eos_token_id] for t in CAPTIONS.values()]
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    lm.train()
    for _ in range(steps):
        # Captions after 0-6 random tokens, as they will sit after an image's tokens: the LM learns the
        # language at any position, not only right after <bos> (GPT-2's positions are absolute).
        rows, labels = [], []
        for ids in captions:
            noise = torch.randint(5, len(tok), (int(torch.randint(0, 7, ())),)).tolist()
            rows.append([tok.bos_token_id] + noise + ids)
            labels.append([-100] * (1 + len(noise)) + ids)
        width = max(map(len, rows))
        batch = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        target = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        loss = lm(input_ids=batch, attention_mask=mask, labels=target).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.eval()
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def caption_table(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("images")
    return write_images(folder), folder


def fit_captioner(lm: Path, frame: pd.DataFrame, folder: Path):
    """A Generator (a small CNN -> 2 tokens -> the frozen tiny LM) that learns each color's caption: ~3 s.

    No prompt: the image's tokens alone ask for the caption (with a prompt, 20 epochs are not enough).
    """
    from tessera.generate import Generator

    config = {
        "data": {"input": "photo", "text": "caption", "options": {"size": 16}},
        "encoder": {"name": "image_cnn", "options": {"dim": 32, "width": 8}, "trainable": True},
        "projector": {"kind": "mlp", "options": {"tokens": 2}},
        "lm": {"source": str(lm)},
        "chat": "none",
        "train": {"epochs": 20, "batch_size": 4, "lr": 3e-3},
    }
    return Generator.fit(frame, config, base_dir=folder)


@pytest.fixture(scope="session")
def saved_captioner(caption_table, tmp_path_factory) -> tuple[Path, Path]:
    """A small CNN + decoder trained from scratch on the colour squares, saved; and its table as a CSV."""
    from tessera.generate import Generator

    frame, folder = caption_table
    table = folder / "captions.csv"
    frame.assign(split=["test" if i % 3 == 0 else "train" for i in range(len(frame))]).to_csv(table, index=False)
    config = {
        "data": {"input": "photo", "text": "caption", "options": {"size": 16}},
        "prompt": PROMPT,
        "encoder": {"name": "image_cnn", "options": {"dim": 32, "width": 8}, "trainable": True},
        "projector": {"kind": "mlp", "options": {"tokens": 2}},
        "lm": {"scratch": {"hidden": 32, "layers": 1, "heads": 2, "vocab_size": 300}},
        "train": {"epochs": 40, "batch_size": 4, "lr": 0.01},
    }
    out = tmp_path_factory.mktemp("captioner") / "model"
    Generator.fit(frame, config, base_dir=folder).save(out)
    return out, table
