"""A generator's config is data: which columns, which encoder, projector and language model, how to train.

    data: {table: photos.csv, input: photo, text: caption, prompt: question}   # prompt: optional column
    # data: {recipe: flickr8k, input: image, text: caption, split: split}      # or a prepared recipe
    prompt: "Describe the picture."   # when there is no prompt column (or its cell is empty)
    encoder: {name: image_cnn, options: {dim: 64}, trainable: true}
    projector: {kind: resampler, options: {tokens: 8}}      # or mlp (LLaVA-1.5)
    lm: {source: gguf:gemma3-270m}    # hub id, local folder, gguf:NAME or a .gguf file
    # lm: {scratch: {hidden: 128, layers: 2, heads: 4, vocab_size: 2000}}   # a small decoder learnt here
    chat: auto                        # auto | gemma | plain | none (see tessera.generate.chat)
    lora: {r: 8, alpha: 16}           # stage 2 (LLaVA's second stage); null: projector only
    train: {epochs: 10, lora_epochs: 5, batch_size: 8, lr: 0.001, lora_lr: 0.0002}

Every mistake is a :class:`~tessera.errors.SchemaError` naming the section and key, raised
before any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tessera.errors import SchemaError
from tessera.generate.chat import CHAT_CHOICES
from tessera.generate.projector import PROJECTORS

SECTIONS = ("data", "prompt", "encoder", "projector", "lm", "chat", "lora", "train")


def _section(cls: type, raw: Any, name: str) -> Any:
    """A dataclass from a mapping; unknown keys and wrong types name the section."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SchemaError(f"generate config: {name}: expected a mapping, got {type(raw).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SchemaError(f"generate config: {name}: unknown key(s) {unknown}; known: {known}")
    try:
        return cls(**raw)
    except TypeError as e:
        raise SchemaError(f"generate config: {name}: {e}") from None


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise SchemaError(f"generate config: {where}: {message}")


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


@dataclass
class DataSpec:
    input: str | None = None  # the image/audio column
    text: str | None = None  # the caption/answer column
    prompt: str | None = None  # optional column with a per-row prompt (a question)
    modality: str | None = None  # inferred from the column when absent
    options: dict[str, Any] = field(default_factory=dict)  # preprocessing options (size, sample_rate, ...)
    split: str | None = None  # optional train/val/test column
    table: str | None = None  # where the rows are (relative to the config file); or:
    recipe: str | None = None  # a prepared dataset (tessera.datasets), with
    recipe_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        _require(self.table is None or self.recipe is None, "data", "give 'table' or 'recipe', not both")
        _require(isinstance(self.recipe_options, dict), "data.recipe_options", "expected a mapping")
        for key in ("input", "text"):
            _require(isinstance(getattr(self, key), str) and getattr(self, key), f"data.{key}", "name a column")
        from tessera.preprocess.base import modalities

        _require(
            self.modality is None or self.modality in modalities(),
            "data.modality",
            f"one of {modalities()}, got {self.modality!r}",
        )
        _require(isinstance(self.options, dict), "data.options", "expected a mapping")


@dataclass
class EncoderSpec:
    name: str | None = None  # registry name; None: the modality's default encoder
    options: dict[str, Any] = field(default_factory=dict)
    trainable: bool = False  # LLaVA keeps the tower frozen; a from-scratch encoder needs True to learn

    def check(self) -> None:
        _require(self.name is None or isinstance(self.name, str), "encoder.name", f"a registry name, got {self.name!r}")
        _require(isinstance(self.options, dict), "encoder.options", "expected a mapping")
        _require(isinstance(self.trainable, bool), "encoder.trainable", f"true or false, got {self.trainable!r}")


@dataclass
class ProjectorSpec:
    kind: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)  # checked against the projector's constructor

    def check(self) -> None:
        _require(self.kind in PROJECTORS, "projector.kind", f"one of {PROJECTORS.known()}, got {self.kind!r}")
        _require(isinstance(self.options, dict), "projector.options", "expected a mapping")


@dataclass
class ScratchSpec:
    """A small Llama-architecture decoder and a byte-level BPE tokenizer, both learnt from the training texts."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    vocab_size: int = 2000
    max_positions: int = 256

    def check(self) -> None:
        for key, low in (("hidden", 8), ("layers", 1), ("heads", 1), ("vocab_size", 300), ("max_positions", 16)):
            _require(
                _is_int(getattr(self, key), low),
                f"lm.scratch.{key}",
                f"an integer >= {low}, got {getattr(self, key)!r}",
            )
        _require(
            self.hidden % self.heads == 0,
            "lm.scratch",
            f"hidden ({self.hidden}) must be divisible by heads ({self.heads})",
        )


@dataclass
class LMSpec:
    source: str | None = None
    scratch: ScratchSpec | None = None

    def check(self) -> None:
        _require(
            (self.source is None) != (self.scratch is None),
            "lm",
            "give exactly one of 'source' (a pretrained LM) or 'scratch'",
        )
        _require(
            self.source is None or (isinstance(self.source, str) and self.source),
            "lm.source",
            f"a hub id, folder or GGUF, got {self.source!r}",
        )
        if self.scratch is not None:
            self.scratch.check()


@dataclass
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: peft's default for the architecture

    def check(self) -> None:
        _require(_is_int(self.r, 1), "lora.r", f"a positive integer, got {self.r!r}")
        _require(
            isinstance(self.alpha, (int, float)) and self.alpha > 0,
            "lora.alpha",
            f"a positive number, got {self.alpha!r}",
        )
        _require(
            isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1,
            "lora.dropout",
            f"in [0, 1), got {self.dropout!r}",
        )
        _require(
            self.target_modules is None
            or (isinstance(self.target_modules, list) and all(isinstance(m, str) for m in self.target_modules)),
            "lora.target_modules",
            f"a list of module names, got {self.target_modules!r}",
        )


@dataclass
class TrainSpec:
    epochs: int = 10  # stage 1: the projector (and, from scratch, the decoder)
    lora_epochs: int = 0  # stage 2: LoRA adapters and the projector
    batch_size: int = 8
    lr: float = 1e-3
    lora_lr: float = 2e-4
    weight_decay: float = 0.0
    max_reply_tokens: int = 64  # longer training answers are cut
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        for key, low in (("epochs", 0), ("lora_epochs", 0), ("batch_size", 1), ("max_reply_tokens", 1), ("seed", 0)):
            _require(
                _is_int(getattr(self, key), low), f"train.{key}", f"an integer >= {low}, got {getattr(self, key)!r}"
            )
        for key in ("lr", "lora_lr"):
            v = getattr(self, key)
            _require(isinstance(v, (int, float)) and v > 0, f"train.{key}", f"a positive number, got {v!r}")
        _require(
            isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
            "train.weight_decay",
            "a number >= 0",
        )


@dataclass
class GenerateConfig:
    data: DataSpec
    prompt: str = ""
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    projector: ProjectorSpec = field(default_factory=ProjectorSpec)
    lm: LMSpec = field(default_factory=lambda: LMSpec(scratch=ScratchSpec()))
    chat: str = "auto"
    lora: LoraSpec | None = None
    train: TrainSpec = field(default_factory=TrainSpec)

    @classmethod
    def from_dict(cls, raw: Any) -> "GenerateConfig":
        if isinstance(raw, GenerateConfig):
            return raw
        if not isinstance(raw, dict):
            raise SchemaError(
                f"generate config: expected a mapping with sections {list(SECTIONS)}, got {type(raw).__name__}"
            )
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise SchemaError(f"generate config: unknown section(s) {unknown}; known: {list(SECTIONS)}")
        lm_raw = raw["lm"] if raw.get("lm") is not None else {"scratch": {}}
        if not isinstance(lm_raw, dict):
            raise SchemaError(f"generate config: lm: expected a mapping, got {type(lm_raw).__name__}")
        lm_raw = dict(lm_raw)
        if "scratch" in lm_raw:
            lm_raw["scratch"] = _section(ScratchSpec, lm_raw["scratch"], "lm.scratch")
        cfg = cls(
            data=_section(DataSpec, raw.get("data"), "data"),
            prompt=raw.get("prompt") or "",
            encoder=_section(EncoderSpec, raw.get("encoder"), "encoder"),
            projector=_section(ProjectorSpec, raw.get("projector"), "projector"),
            lm=_section(LMSpec, lm_raw, "lm"),
            chat=raw.get("chat", "auto"),
            lora=None if raw.get("lora") is None else _section(LoraSpec, raw["lora"], "lora"),
            train=_section(TrainSpec, raw.get("train"), "train"),
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        self.data.check()
        _require(isinstance(self.prompt, str), "prompt", f"text, got {type(self.prompt).__name__}")
        self.encoder.check()
        self.projector.check()
        self.lm.check()
        _require(self.chat in CHAT_CHOICES, "chat", f"one of {list(CHAT_CHOICES)}, got {self.chat!r}")
        if self.lora is not None:
            self.lora.check()
            _require(
                self.lm.scratch is None, "lora", "LoRA adapts a pretrained LM; a scratch decoder trains all its weights"
            )
        self.train.check()
        _require(
            self.lora is None or self.train.lora_epochs > 0,
            "train.lora_epochs",
            "lora is set, so give lora_epochs >= 1",
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lm"] = {k: v for k, v in d["lm"].items() if v is not None}
        return d


def load_config(path: str | os.PathLike) -> tuple[GenerateConfig, Path | None]:
    """A generator config file: the sections above plus ``output`` (where ``tessera generate fit`` saves).

    ``data.table`` and ``output`` are relative to the file's folder, like every Tessera config.
    """
    from tessera.files import read_yaml

    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: expected a mapping with sections {list(SECTIONS)} and 'output'")
    raw = dict(raw)
    base = path.resolve().parent
    output = raw.pop("output", None)
    task = raw.pop("task", "text")  # tessera generate fit dispatches on it; text2image/text2speech are diffusion
    if task != "text":
        raise SchemaError(f"{path}: task: {task!r} is not a text generator's config (task: text, or none)")
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("table"), str):
        raw["data"] = {**data, "table": str(base / Path(data["table"]).expanduser())}
    try:
        cfg = GenerateConfig.from_dict(raw)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None
    return cfg, None if output is None else base / Path(str(output)).expanduser()
