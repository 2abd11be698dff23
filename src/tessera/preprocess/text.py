"""Text cells to fixed-length token ids, with a tokenizer trained on the training rows or loaded pretrained.

Every sample is truncated and padded to exactly ``max_length`` so text batches stack
like any other modality. The fitted state is the fast tokenizer's own JSON: a saved
model can tokenise new text without the training data, the hub, or ``transformers``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tessera.derive import derivation, derived_text
from tessera.errors import DataError, SchemaError, TesseraError
from tessera.media import is_missing
from tessera.preprocess.base import FRACTIONS, LoadContext, ModalityBatch, Noise, Preprocessor, Sample, register

TOKENIZER_CHOICES = ("wordpiece", "bpe", "pretrained")
# Fixed order so [PAD] is id 0 in every trained tokenizer: encoders can rely on padding_idx=0.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


@register("text")
class TextPreprocessor(Preprocessor):
    """Tokenise one text column into ``ids`` int64 (max_length,) and an attention ``mask`` bool (max_length,).

    ``lowercase`` applies to trained tokenizers only; a pretrained tokenizer keeps the
    normalisation it was trained with, because changing it would break its vocabulary.

    ``via`` makes a derived input (:mod:`tessera.derive`): each cell is a file of another
    modality (a recording, a photo) and the text is what ``via`` derives from it (``transcribe``,
    ``ocr``). Such an input is fitted on the derived texts, which :meth:`Pipeline.fit
    <tessera.pipeline.Pipeline.fit>` puts in the column (it knows where the files are).
    """

    default_encoder = "text_transformer"
    noise = Noise("token_dropout", FRACTIONS)

    def __init__(
        self,
        columns: Sequence[str],
        tokenizer: str = "wordpiece",
        pretrained: str | None = None,
        vocab_size: int = 8000,
        min_frequency: int = 2,
        max_length: int = 64,
        lowercase: bool = True,
        via: str | None = None,
    ) -> None:
        super().__init__(columns)
        if via is not None:
            derivation(via, f"text column '{columns[0]}'")
        if tokenizer not in TOKENIZER_CHOICES:
            raise SchemaError(f"text tokenizer must be one of {TOKENIZER_CHOICES}, got {tokenizer!r}")
        if tokenizer == "pretrained" and not pretrained:
            raise SchemaError(
                "tokenizer 'pretrained' needs the 'pretrained' option: a Hugging Face model id or a local directory"
            )
        if max_length < 2:
            raise SchemaError(f"text max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}")
        self.tokenizer = tokenizer
        self.pretrained = pretrained
        self.vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.max_length = max_length
        self.lowercase = lowercase
        self.via = via
        self._tokenizer: Tokenizer | None = None

    # -- learning -------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "TextPreprocessor":
        if self.tokenizer == "pretrained":
            self._set_tokenizer(_load_pretrained(self.pretrained))  # type: ignore[arg-type]
            return self
        texts = list(_training_texts(frame[self.columns[0]]))
        if not texts:
            raise DataError("no text in the training rows to train a tokenizer on", column=self.columns[0])
        tok = self._train(texts)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        self._set_tokenizer(tok)
        return self

    def _train(self, texts: list[str]) -> Tokenizer:
        tok = self._new_tokenizer()
        if self.tokenizer != "wordpiece":
            tok.train_from_iterator(texts, trainer=self._trainer(), length=len(texts))
            return tok
        # tokenizers numbers WordPiece's "##x" pieces in hash-map order and breaks ties between
        # equally frequent merges by those numbers, so two runs on the same text gave different
        # vocabularies (huggingface/tokenizers#1794). Declaring every "##x" piece up front (as a
        # special token, the one way in) fixes their ids and so the whole run; the tokenizer is
        # then rebuilt from the learned vocabulary with only the real special tokens.
        pieces = _continuation_pieces(tok, texts)
        tok.train_from_iterator(texts, trainer=self._trainer(pieces), length=len(texts))
        fresh = self._new_tokenizer(tok.get_vocab())
        fresh.add_special_tokens(SPECIAL_TOKENS)
        return fresh

    def _new_tokenizer(self, vocab: dict[str, int] | None = None) -> Tokenizer:
        if self.tokenizer == "wordpiece":
            tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
            steps = [normalizers.NFD(), normalizers.StripAccents()]
            tok.normalizer = normalizers.Sequence(steps + [normalizers.Lowercase()] if self.lowercase else steps)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            return tok
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        if self.lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        return tok

    def _trainer(self, fixed_pieces: Sequence[str] = ()) -> trainers.Trainer:
        if self.tokenizer == "wordpiece":
            return trainers.WordPieceTrainer(
                vocab_size=self.vocab_size,
                min_frequency=self.min_frequency,
                special_tokens=[*SPECIAL_TOKENS, *fixed_pieces],
                show_progress=False,
            )
        # The byte alphabet up front means any input, even unseen scripts, encodes without [UNK].
        return trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )

    def _set_tokenizer(self, tok: Tokenizer) -> None:
        """Pin truncation and padding to max_length so every encoding has the same shape."""
        pad_id = tok.padding["pad_id"] if tok.padding else _pad_id_of(tok)
        pad_token = tok.id_to_token(pad_id) or "[PAD]"
        tok.enable_truncation(max_length=self.max_length)
        tok.enable_padding(length=self.max_length, pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tok

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The fitted `tokenizers.Tokenizer` (loaded on first use for a pretrained one)."""
        if self._tokenizer is None:
            if self.tokenizer == "pretrained":
                self._set_tokenizer(_load_pretrained(self.pretrained))  # type: ignore[arg-type]
            else:
                raise TesseraError(
                    f"the {self.tokenizer} tokenizer for text column '{self.columns[0]}' is not trained yet: "
                    "fit the text preprocessor on training data first"
                )
        return self._tokenizer  # type: ignore[return-value]

    # -- what encoders need -------------------------------------------------------------
    @property
    def vocab_size_actual(self) -> int:
        """Embedding rows needed: may differ from ``vocab_size`` (small corpus, pretrained vocab)."""
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return int(self.backend_tokenizer.padding["pad_id"])

    # -- per row ----------------------------------------------------------------------
    @property
    def reads_files(self) -> bool:
        return self.via is not None

    @property
    def learns_from_texts(self) -> bool:
        """Whether fitting reads the texts (a tokenizer trained on them; a pretrained one learns nothing)."""
        return self.tokenizer != "pretrained"

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        value = values[0]
        if self.via is not None:
            value = derived_text(self.via, value, ctx.base_dir, ctx.cache_dir)
        if is_missing(value):
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise DataError(
                f"expected text, got {len(value)} bytes; store text columns as strings "
                "(or declare the column as a media modality)"
            )
        enc = self.backend_tokenizer.encode(value if isinstance(value, str) else str(value))
        return Sample(data=np.asarray(enc.ids, dtype=np.int64), mask=np.asarray(enc.attention_mask, dtype=bool))

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise many strings at once (parallel in Rust); used for prompts and bulk inference."""
        encs = self.backend_tokenizer.encode_batch(list(texts))
        if not encs:
            return np.zeros((0, self.max_length), dtype=np.int64), np.zeros((0, self.max_length), dtype=bool)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=bool)
        return ids, mask

    def empty(self) -> Sample:
        pad = self.pad_id if self._tokenizer is not None else 0
        return Sample(data=np.full(self.max_length, pad, dtype=np.int64), mask=np.zeros(self.max_length, dtype=bool))

    # -- what the rest of Tessera asks ---------------------------------------------------------
    def encoder_facts(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "vocab_size": int(self.vocab_size_actual), "pad_id": int(self.pad_id)}

    @classmethod
    def check_column(cls, col: pd.Series, column: str) -> None:
        numbers_only = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numbers_only and len(col.dropna()):
            raise DataError("a text column holds numbers only; declare it numeric or categorical", column=column)

    def corrupt(self, batch: ModalityBatch, level: float, generator: torch.Generator) -> ModalityBatch:
        """Token dropout: each valid, non-special token becomes [UNK] with probability ``level``.

        Tokenizers without an [UNK] token get the dropped tokens replaced by padding and masked out.
        """
        tokenizer = self.backend_tokenizer
        unk = next((i for i in map(tokenizer.token_to_id, ("[UNK]", "<unk>")) if i is not None), None)
        special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        ids = batch.data
        mask = batch.mask if batch.mask is not None else torch.ones_like(ids, dtype=torch.bool)
        candidates = mask & batch.present.unsqueeze(1) & ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))
        hit = candidates & (torch.rand(ids.shape, generator=generator) < level)
        if unk is not None:
            return ModalityBatch(torch.where(hit, torch.full_like(ids, unk), ids), batch.present, batch.mask)
        return ModalityBatch(torch.where(hit, torch.full_like(ids, self.pad_id), ids), batch.present, mask & ~hit)

    # -- persistence -------------------------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        if self._tokenizer is None and self.tokenizer != "pretrained":
            return {}
        # Pretrained tokenizers are stored too, so predicting later needs no hub access.
        return {"tokenizer_json": self.backend_tokenizer.to_str()}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        if "tokenizer_json" in state:
            self._set_tokenizer(Tokenizer.from_str(state["tokenizer_json"]))

    def describe(self) -> str:
        name = f"pretrained {self.pretrained}" if self.tokenizer == "pretrained" else self.tokenizer
        source = f"{self.via} of {self.columns[0]}" if self.via else self.columns[0]
        return f"text({source}; {name}, max_length={self.max_length})"


def _training_texts(series: pd.Series) -> Iterator[str]:
    """Texts the tokenizer learns from. Bytes are skipped here; ``load`` reports them per row."""
    for value in series:
        if is_missing(value) or isinstance(value, (bytes, bytearray, memoryview)):
            continue
        yield value if isinstance(value, str) else str(value)


def _pad_id_of(tok: Tokenizer) -> int:
    """A pad id for tokenizers saved without one (e.g. GPT-2 style); the mask hides it anyway."""
    for token in ("[PAD]", "<pad>", "<|padding|>", "</s>", "<|endoftext|>", "[UNK]", "<unk>"):
        found = tok.token_to_id(token)
        if found is not None:
            return found
    return 0


def _load_pretrained(name: str) -> Tokenizer:
    """The fast (Rust) tokenizer behind a Hugging Face tokenizer; only its JSON is kept afterwards."""
    path = Path(name).expanduser()
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise SchemaError(f"pretrained tokenizer directory {str(path)!r} does not exist")
    where = f"local directory {str(path)!r}" if path.is_dir() else f"Hugging Face model id {name!r}"
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name, use_fast=True)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, HFValidationError ...
        hint = " (HF_HUB_OFFLINE is set, so only the local cache was searched)" if offline else ""
        raise SchemaError(
            f"cannot load a pretrained tokenizer from {where} with transformers.AutoTokenizer"
            f"{hint}: {type(e).__name__}: {e}"
        ) from e
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise SchemaError(
            f"the tokenizer from {where} has no fast (tokenizers) version; Tessera needs one to save it with the model"
        )
    # A copy, so our truncation/padding settings never leak into the transformers object.
    tok = Tokenizer.from_str(backend.to_str())
    if hf_tok.pad_token_id is not None:
        tok.enable_padding(pad_id=hf_tok.pad_token_id, pad_token=hf_tok.pad_token)
    return tok


def _continuation_pieces(tok: Tokenizer, texts: Sequence[str]) -> list[str]:
    """Every "##c" piece WordPiece training will create: each character that follows another in a word."""
    chars: set[str] = set()
    for text in texts:
        normalized = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalized):
            chars.update(word[1:])
    return [f"##{c}" for c in sorted(chars)]
