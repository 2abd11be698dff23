"""Training a multimodal LM in LLaVA's two stages.

1. ``projector``: only the projector learns (and the encoder, when its config says so); the
   LM is frozen, so the media are mapped into a space the LM already reads. A from-scratch
   decoder has nothing to keep, so in its stage 1 (``scratch``) every LM weight learns too.
2. ``lora``: low-rank adapters (``peft``) on the LM's attention, plus the projector. The base
   LM's own weights never change, so a saved generator stores only the adapters.

Frozen modules are kept in eval mode while the rest trains: a frozen encoder's BatchNorm
would otherwise keep updating its running statistics. Each epoch logs one line (and shows a
progress bar on a terminal).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from tessera.errors import SchemaError
from tessera.generate.config import LoraSpec, TrainSpec
from tessera.generate.model import Encoded, MultimodalLM
from tessera.optim import adamw, warmup_cosine_schedule
from tessera.preprocess.base import ModalityBatch
from tessera.progress import progress_bar
from tessera.train import resolve_device

log = logging.getLogger(__name__)

STAGES = ("projector", "scratch", "lora")


@dataclass
class PairedSplit:
    """Training pairs: each pair's media (a row of ``media``), prompt and target text.

    ``media`` holds each distinct input once (Flickr has five captions per photo), decoded
    (a :class:`ModalityBatch` of them all) or already through a frozen encoder (:class:`Encoded`).
    """

    media: ModalityBatch | Encoded
    at: torch.Tensor  # (pairs,) the media row of each pair
    prompts: list[str]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.answers)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[ModalityBatch | Encoded, list[str], list[str]]]:
        n = len(self)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield (
                self.media.index(self.at[idx]),
                [self.prompts[i] for i in idx.tolist()],
                [self.answers[i] for i in idx.tolist()],
            )


@torch.no_grad()
def encode_once(model: MultimodalLM, data: PairedSplit, batch_size: int = 32) -> PairedSplit:
    """The same pairs with every distinct input run through the (frozen) encoder once.

    Token outputs are cut to the longest valid length in the split (a Whisper encoder
    pads every clip to 1500 frames), so keeping them costs what the inputs hold.
    """
    if isinstance(data.media, Encoded):
        return data
    assert model.encoder is not None
    was_training = model.encoder.training
    model.encoder.eval()
    device = model.device
    media = data.media
    parts: list[Encoded] = []
    with progress_bar("encoding (frozen encoder)", total=len(media)) as advance:
        for start in range(0, len(media), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(media)))
            parts.append(model.encode(media.index(idx).to(device)).to("cpu"))
            advance(len(idx))
    model.encoder.train(was_training)
    width = max(int(p.mask.any(0).nonzero().max()) + 1 if p.mask.any() else 1 for p in parts)
    tokens = torch.cat([p.tokens[:, :width] for p in parts])
    mask = torch.cat([p.mask[:, :width] for p in parts])
    return PairedSplit(Encoded(tokens, mask), data.at, data.prompts, data.answers)


def add_lora(model: MultimodalLM, spec: LoraSpec) -> None:
    """Wrap the LM in peft LoRA adapters (target modules: peft's default for the architecture unless given)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
    )
    try:
        model.lm = get_peft_model(model.lm, config)
    except ValueError as e:  # peft: no default targets for this architecture, or a named module is absent
        raise SchemaError(
            f"generate config: lora: {e}; set lora.target_modules to the LM's attention projections"
        ) from None


def set_stage(model: MultimodalLM, stage: str, encoder_trainable: bool) -> list[nn.Parameter]:
    """Mark what learns in ``stage``; returns those parameters."""
    if stage not in STAGES:
        raise SchemaError(f"unknown training stage {stage!r}; known: {STAGES}")
    model.requires_grad_(False)
    if model.projector is not None:
        model.projector.requires_grad_(True)
    if model.encoder is not None and encoder_trainable:
        model.encoder.requires_grad_(True)
    if stage == "scratch":
        model.lm.requires_grad_(True)
    elif stage == "lora":
        for name, p in model.lm.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def set_modes(model: MultimodalLM, stage: str, encoder_trainable: bool) -> None:
    model.train()
    if model.encoder is not None and not encoder_trainable:
        model.encoder.eval()
    if stage == "projector":
        model.lm.eval()


@torch.no_grad()
def mean_loss(model: MultimodalLM, data: PairedSplit, batch_size: int, max_reply_tokens: int) -> float:
    model.eval()
    total, n = 0.0, 0
    for media, prompts, answers in data.batches(batch_size):
        loss = model.loss(media.to(model.device), prompts, answers, max_reply_tokens)
        total += loss.item() * len(answers)
        n += len(answers)
    return total / max(n, 1)


def fit_stage(
    model: MultimodalLM,
    train: PairedSplit,
    val: PairedSplit | None,
    stage: str,
    config: TrainSpec,
    *,
    epochs: int,
    lr: float,
    encoder_trainable: bool,
) -> list[dict[str, float | str]]:
    """Train in place for one stage; returns one record per epoch (loss, val loss, seconds)."""
    device = resolve_device(config.device)
    model.to(device)
    params = set_stage(model, stage, encoder_trainable)
    if not params:
        raise SchemaError(f"stage {stage!r} has nothing to train")
    log.info(
        "stage %s: %d trainable parameters of %d",
        stage,
        sum(p.numel() for p in params),
        sum(p.numel() for p in model.parameters()),
    )
    optimizer = adamw(params, lr=lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, max(1, -(-len(train) // config.batch_size)) * epochs, 0.05)
    torch.manual_seed(config.seed)
    history: list[dict[str, float | str]] = []
    for epoch in range(epochs):
        set_modes(model, stage, encoder_trainable)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        with progress_bar(f"{stage} {epoch + 1}/{epochs}", total=len(train)) as advance:
            for media, prompts, answers in train.batches(
                config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch
            ):
                loss = model.loss(media.to(device), prompts, answers, config.max_reply_tokens)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                seen += len(answers)
                loss_sum += loss.item() * len(answers)
                advance(len(answers), loss=loss_sum / seen)
        record: dict[str, float | str] = {"stage": stage, "epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1)}
        if val is not None and len(val):
            record["val_loss"] = mean_loss(model, val, config.batch_size, config.max_reply_tokens)
        record["seconds"] = time.perf_counter() - t0
        log.info("%s", "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        history.append(record)
    model.eval()
    model.requires_grad_(False)
    return history


def run_stages(
    model: MultimodalLM,
    train: PairedSplit,
    val: PairedSplit | None,
    config: TrainSpec,
    *,
    scratch: bool,
    lora: LoraSpec | None,
    encoder_trainable: bool,
) -> list[dict[str, float | str]]:
    """Stage 1 (projector, or scratch) then, with ``lora``, stage 2. A frozen encoder runs once per input."""
    history: list[dict[str, float | str]] = []
    if model.encoder is not None and not encoder_trainable:
        model.to(resolve_device(config.device))
        train = encode_once(model, train)
        val = None if val is None else encode_once(model, val)
    if config.epochs:
        stage = "scratch" if scratch else "projector"
        history += fit_stage(
            model, train, val, stage, config, epochs=config.epochs, lr=config.lr, encoder_trainable=encoder_trainable
        )
    if lora is not None:
        add_lora(model, lora)
        history += fit_stage(
            model,
            train,
            val,
            "lora",
            config,
            epochs=config.lora_epochs,
            lr=config.lora_lr,
            encoder_trainable=encoder_trainable,
        )
    return history
