"""The Python face of generation: fit on a table, then describe, answer or chat.

    gen = Generator.fit("photos.csv", {"data": {"input": "photo", "text": "caption"},
                                       "lm": {"source": "gguf:gemma3-270m"}, "lora": {"r": 8},
                                       "train": {"epochs": 3, "lora_epochs": 2}})
    gen.generate(["dog.jpg"], prompt="What is in this picture?")   # -> ["a dog runs on the grass"]
    for piece in gen.stream("dog.jpg"): print(piece, end="")
    Generator.from_lm("gguf:gemma3-270m").chat([{"role": "user", "content": "Hi!"}])

A saved generator (:meth:`save`) is a folder written under a temporary name and swapped in
whole: ``generator.json`` (config, fitted preprocessing, chat format, where the base LM comes
from), ``model.pt`` (encoder and projector weights), ``adapter/`` (the LoRA adapters, in
peft's format) and, only for a decoder trained from scratch, ``lm/`` (that decoder and its
tokenizer). A pretrained LM is referenced, not copied: loading reads it from its source again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import torch

import tessera
from tessera.errors import SchemaError, TesseraError
from tessera.generate.chat import Message, get_chat_format, resolve_chat_format
from tessera.generate.config import GenerateConfig
from tessera.generate.lm import build_scratch_lm, hidden_size, is_gguf, load_causal_lm, train_tokenizer
from tessera.generate.model import MultimodalLM, StreamedReply
from tessera.generate.projector import create_projector
from tessera.generate.train import PairedSplit, run_stages
from tessera.files import atomic_dir
from tessera.media import is_missing
from tessera.prepare import split_and_fit
from tessera.pipeline import Pipeline, cache_split, iterate
from tessera.schema import InputSpec, Schema, infer_modality
from tessera.table import Table, read_table

META_FILE = "generator.json"
WEIGHTS_FILE = "model.pt"
ADAPTER_DIR = "adapter"
LM_DIR = "lm"
FORMAT = "tessera.generator/1"
INPUT = "media"  # the pipeline's name for the one media input


class Generator:
    """A :class:`MultimodalLM` plus the fitted preprocessing of its media input (none for a text-only LM)."""

    def __init__(
        self,
        model: MultimodalLM,
        config: GenerateConfig | None,
        pipeline: Pipeline | None,
        lm_source: str | None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.pipeline = pipeline
        self.lm_source = lm_source  # None: the LM was trained from scratch and is saved with the generator
        self.history = history or []

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_lm(cls, source: str | os.PathLike, *, chat: str = "auto") -> "Generator":
        """A text-only generator over a pretrained LM (hub id, folder, ``gguf:NAME`` or ``.gguf``)."""
        lm, tokenizer = load_causal_lm(source)
        model = MultimodalLM(lm, tokenizer, resolve_chat_format(chat, lm, tokenizer))
        return cls(model, None, None, _reference(source))

    @classmethod
    def fit(
        cls, table: Any, config: dict[str, Any] | GenerateConfig, *, base_dir: str | os.PathLike | None = None
    ) -> "Generator":
        """Train on a table with a media column and a text column (and optionally a prompt column).

        ``table`` None: the one the config's ``data.table`` or ``data.recipe`` names.
        """
        cfg = GenerateConfig.from_dict(config)
        table = config_table(cfg) if table is None else table
        pipeline, train, val = prepare_data(table, cfg, base_dir)
        torch.manual_seed(cfg.train.seed)
        if cfg.lm.scratch is not None:
            tokenizer = train_tokenizer(train.answers + train.prompts, cfg.lm.scratch.vocab_size)
            lm, source = build_scratch_lm(cfg.lm.scratch, tokenizer), None
        else:
            lm, tokenizer = load_causal_lm(cfg.lm.source)
            source = _reference(cfg.lm.source)
        chat = resolve_chat_format(
            "none" if cfg.lm.scratch is not None and cfg.chat == "auto" else cfg.chat, lm, tokenizer
        )
        model = build_model(cfg, pipeline, lm, tokenizer, chat.name)
        history = run_stages(
            model,
            train,
            val,
            cfg.train,
            scratch=cfg.lm.scratch is not None,
            lora=cfg.lora,
            encoder_trainable=cfg.encoder.trainable,
        )
        return cls(model.to("cpu"), cfg, pipeline, source, history)

    # -- generating -------------------------------------------------------------------------
    @property
    def modality(self) -> str | None:
        return None if self.pipeline is None else self.pipeline.preprocessors[INPUT].modality

    def _prompts(self, prompt: str | Sequence[str] | None, n: int) -> list[str]:
        default = self.config.prompt if self.config is not None else ""
        if prompt is None or isinstance(prompt, str):
            return [default if prompt is None else prompt] * n
        prompts = list(prompt)
        if len(prompts) != n:
            raise SchemaError(f"got {n} input(s) but {len(prompts)} prompts; give one prompt, or one per input")
        return prompts

    def _media_batches(
        self, inputs: Sequence[Any], batch_size: int, base_dir: str | os.PathLike | None
    ) -> Iterator[Any]:
        """Decoded media in input order, ``batch_size`` at a time; a bad value is a DataError naming its position."""
        assert self.pipeline is not None
        column = self.pipeline.preprocessors[INPUT].columns[0]
        for i, v in enumerate(inputs):
            if is_missing(v):
                raise SchemaError(f"input {i} is missing; this generator describes {self.modality} inputs")
        table = Table(
            pd.DataFrame({column: pd.Series(list(inputs), dtype=object)}),
            None if base_dir is None else str(base_dir),
            "inputs",
        )
        loader = self.pipeline.loader(self.pipeline.dataset(table, with_target=False), batch_size=batch_size)
        for batch in iterate(loader):
            yield batch.inputs[INPUT]

    def generate(
        self,
        inputs: Sequence[Any] | None = None,
        prompt: str | Sequence[str] | None = None,
        *,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        use_cache: bool = True,
        batch_size: int = 8,
        base_dir: str | os.PathLike | None = None,
        seed: int | None = None,
        num_beams: int = 1,
    ) -> list[str]:
        """One reply per input (image/audio path, bytes ...), or per prompt for a text-only generator.

        Batched with left padding; greedy unless ``do_sample`` or ``num_beams`` > 1 (beam search,
        the likeliest reply among ``num_beams`` kept at each step); ``use_cache=False`` turns the
        KV cache off (every step recomputes the whole sequence; only for speed comparisons).
        """
        if seed is not None:
            torch.manual_seed(seed)
        options = dict(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            use_cache=use_cache,
            num_beams=num_beams,
        )
        if self.pipeline is None:
            if inputs is not None:
                raise SchemaError("this generator is text-only; pass prompts, not inputs")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if not prompts:
                raise SchemaError("give a prompt (or a list of prompts)")
            return [
                r
                for i in range(0, len(prompts), batch_size)
                for r in self.model.generate(None, prompts[i : i + batch_size], **options)
            ]
        if inputs is None or isinstance(inputs, (str, bytes)):
            raise SchemaError(
                f"inputs must be a list of {self.modality} values (paths, bytes ...); for one value use [value]"
            )
        prompts = self._prompts(prompt, len(inputs))
        out: list[str] = []
        for media in self._media_batches(inputs, batch_size, base_dir):
            out += self.model.generate(
                media.to(self.model.device), prompts[len(out) : len(out) + len(media)], **options
            )
        return out

    def stream(
        self,
        input: Any = None,
        prompt: str | Sequence[Message] | None = None,
        *,
        base_dir: str | os.PathLike | None = None,
        **options: Any,
    ) -> StreamedReply:
        """The reply to one input (or one prompt, text-only) as pieces of text while it is generated.

        The returned :class:`~tessera.generate.model.StreamedReply` also counts the prompt's and
        the reply's tokens, and stops the generation when closed early.
        """
        media = None
        if self.pipeline is not None:
            if input is None:
                raise SchemaError(f"give one {self.modality} input to stream a reply about")
            media = next(self._media_batches([input], 1, base_dir)).to(self.model.device)
        elif input is not None:
            raise SchemaError("this generator is text-only; pass a prompt, not an input")
        text = prompt if prompt is not None else self._prompts(None, 1)[0]
        return self.model.stream(media, text, **options)

    def chat(
        self,
        messages: Sequence[Message],
        input: Any = None,
        *,
        base_dir: str | os.PathLike | None = None,
        **options: Any,
    ) -> str:
        """The assistant's reply to a conversation (``[{"role": "user", "content": ...}, ...]``)."""
        return "".join(self.stream(input, messages, base_dir=base_dir, **options))

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        if self.config is None or self.pipeline is None:
            raise TesseraError("a text-only generator is just its LM; nothing of its own to save")
        model = self.model
        meta = {
            "format": FORMAT,
            "tessera_version": tessera.__version__,
            "config": self.config.to_dict(),
            "lm_source": self.lm_source,
            "chat": model.chat.name,
            "pipeline": self.pipeline.state_dict(),
            "history": self.history,
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            weights = {"encoder": model.encoder.state_dict(), "projector": model.projector.state_dict()}
            torch.save(weights, tmp / WEIGHTS_FILE)
            if hasattr(model.lm, "peft_config"):  # LoRA-adapted (a peft PeftModel)
                model.lm.save_pretrained(tmp / ADAPTER_DIR)
            if self.lm_source is None:
                model.lm.save_pretrained(tmp / LM_DIR)
                model.tokenizer.save_pretrained(tmp / LM_DIR)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Generator":
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file() or not (path / WEIGHTS_FILE).is_file():
            raise TesseraError(f"{path} is not a saved Tessera generator (expected {META_FILE} and {WEIGHTS_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise TesseraError(f"{meta_path} has format {meta.get('format')!r}; this Tessera reads {FORMAT!r}")
        cfg = GenerateConfig.from_dict(meta["config"])
        pipeline = Pipeline.from_state(meta["pipeline"])
        lm, tokenizer = load_causal_lm(meta["lm_source"] or path / LM_DIR)
        if (path / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, path / ADAPTER_DIR).eval()
        model = build_model(cfg, pipeline, lm, tokenizer, meta["chat"])
        weights = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.encoder.load_state_dict(weights["encoder"])
        model.projector.load_state_dict(weights["projector"])
        return cls(model.to(device), cfg, pipeline, meta["lm_source"], meta.get("history"))

    def __repr__(self) -> str:
        what = f"{self.modality} -> text" if self.modality else "text -> text"
        return f"Generator({what}, lm={self.lm_source or 'trained from scratch'}, chat={self.model.chat.name})"


def prepare_data(
    table: Any, cfg: GenerateConfig, base_dir: str | os.PathLike | None = None
) -> tuple[Pipeline, PairedSplit, PairedSplit | None]:
    """The fitted preprocessing of the media column, and the decoded train (and val) rows with their texts."""
    t = read_table(table, base_dir)
    frame = t.frame
    d = cfg.data
    for role, column in (("input", d.input), ("text", d.text), ("prompt", d.prompt), ("split", d.split)):
        if column is not None and column not in frame.columns:
            raise SchemaError(f"data.{role}: column {column!r} is not in {t.source}; columns: {list(frame.columns)}")
    modality = d.modality or infer_modality(frame[d.input], t.base_dir)[0]
    if modality is None:
        raise SchemaError(f"data.input: cannot tell the modality of column {d.input!r}; set data.modality")
    # Naming the encoder in the schema lets a pretrained tower set the preprocessing its weights expect.
    schema = Schema({INPUT: InputSpec(modality, [d.input], dict(d.options), encoder=cfg.encoder.name)})
    usable = frame[frame[d.text].map(lambda v: isinstance(v, str) and v.strip() != "")]
    if usable.empty:
        raise SchemaError(f"data.text: column {d.text!r} has no non-empty text to learn from")
    # The one preparation path (tessera.prepare): splits, then the pipeline fitted on the training rows.
    # Without a split column every usable row trains (no random validation share).
    split = split_and_fit(
        Table(usable, t.base_dir, t.source), Schema(schema.inputs, split=d.split), supervised=False, val_fraction=0.0
    )
    pipeline, parts = split.pipeline, {name: table.frame for name, table in split.tables.items()}

    def paired(part: pd.DataFrame, name: str) -> PairedSplit:
        # Each distinct input is decoded once (a photo with five captions is one image).
        keys = pd.Series([media_key(v, r) for r, v in part[d.input].items()], index=part.index)
        distinct = part[~keys.duplicated().to_numpy()]
        dataset = pipeline.dataset(Table(distinct, t.base_dir, t.source), with_target=False)
        media = cache_split(pipeline, dataset, description=f"decoding {name}")
        position = {keys[r]: i for i, r in enumerate(media.rows.tolist())}
        rows = part[keys.isin(position).to_numpy()]  # inputs that could not be decoded were reported and left out
        given = rows[d.prompt].tolist() if d.prompt else [None] * len(rows)
        prompts = [p if isinstance(p, str) and p.strip() else cfg.prompt for p in given]
        at = torch.tensor([position[keys[r]] for r in rows.index], dtype=torch.long)
        return PairedSplit(media.inputs[INPUT], at, prompts, [str(a) for a in rows[d.text]])

    return pipeline, paired(parts["train"], "train"), paired(parts["val"], "val") if "val" in parts else None


def config_table(cfg: GenerateConfig) -> Path:
    """The table a config's data section names: a prepared recipe, or a file."""
    d = cfg.data
    if d.recipe is not None:
        from tessera import datasets

        return Path(datasets.prepare(d.recipe, **d.recipe_options).table_path)
    if d.table is None:
        raise SchemaError("generate config: data: name the rows with 'table' (a file) or 'recipe' (a prepared dataset)")
    return Path(d.table).expanduser()


def media_key(value: Any, row: Any) -> Any:
    """What makes two cells the same input: the path or bytes they hold (anything else counts as its own row)."""
    return value if isinstance(value, (str, bytes)) else ("row", row)


def build_model(cfg: GenerateConfig, pipeline: Pipeline, lm: Any, tokenizer: Any, chat: str) -> MultimodalLM:
    """Encoder (from the registry, sized by the fitted preprocessing) and projector around ``lm``."""
    from tessera.model import build_encoders

    spec = {"options": dict(cfg.encoder.options)} | ({"name": cfg.encoder.name} if cfg.encoder.name else {})
    encoder = build_encoders(pipeline, {INPUT: spec}, int(cfg.encoder.options.get("dim", 128)))[INPUT]
    pre = pipeline.preprocessors[INPUT]
    projector = create_projector(cfg.projector.kind, encoder.output_dim, hidden_size(lm), **cfg.projector.options)
    return MultimodalLM(lm, tokenizer, get_chat_format(chat), encoder, projector, placeholder=f"<{pre.modality}>")


def _reference(source: str | os.PathLike) -> str:
    """How a saved generator names its base LM: local folders and files absolute, hub ids and gguf:NAME as given."""
    text = str(source)
    local = Path(text).expanduser()
    return str(local.resolve()) if not text.startswith("gguf:") and (local.exists() or is_gguf(text)) else text
