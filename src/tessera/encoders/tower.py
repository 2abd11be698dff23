"""What every pretrained tower shares: declared input needs, frozen by default, a pure ``embed``.

A tower is an encoder whose weights come from a package in the catalogue (:mod:`tessera.zoo`).
Three things set it apart from a from-scratch encoder:

* **Its input is fixed by its weights.** ``input_options`` states the preprocessor options
  the weights were trained with (image size and ImageNet statistics, 16 kHz waveform ...);
  :func:`tessera.encoders.input_options.merge_input_options` fills them in before the
  preprocessors are fitted, and refuses a schema that contradicts them.
* **It is frozen unless asked.** ``trainable: true`` fine-tunes every weight, ``train_blocks: N``
  only the last N blocks; the rest stays in eval mode (BatchNorm statistics fixed) and runs
  without autograd. Towers run by ONNX Runtime or CTranslate2 cannot be trained at all and
  say so. Only the parts that learn pay for gradients.
* **Its frozen output is a pure function of the row.** ``embed(batch)`` runs in eval mode
  without autograd, and absent rows are never computed (so a row's features do not depend
  on its batch-mates), which is what a frozen-feature cache needs; ``cache_key()`` names
  everything that changes the features: the tower, its package versions, its options and
  the preprocessing it requires.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, masked_mean
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

OUTPUTS = ("pooled", "tokens")
# What the audio towers read: the mono 16 kHz waveform, from which each computes its own features.
WAVEFORM_16K: dict[str, Any] = {"sample_rate": 16000, "representation": "waveform", "normalize": "none"}


class Tower(Encoder):
    """Base class. Subclasses set the class attributes, call ``_setup`` last in ``__init__``,
    implement ``compute`` (present rows only), and torch towers implement ``blocks``."""

    modality: ClassVar[str]
    input_options: ClassVar[dict[str, Any]] = {}  # preprocessor options the weights require
    runtime: ClassVar[str] = "torch"  # "onnxruntime" and "ctranslate2" towers are frozen-only
    has_tokens: ClassVar[bool] = False  # whether output: tokens means anything for this tower

    trainable: bool
    train_blocks: int
    output: str

    def _check_training(self, trainable: bool, train_blocks: int, output: str) -> None:
        """Validate the options before any weight is loaded, so a wrong config fails fast."""
        if output not in OUTPUTS:
            raise SchemaError(f"encoder {self.encoder_name!r}: output must be one of {OUTPUTS}, got {output!r}")
        if output == "tokens" and not self.has_tokens:
            raise SchemaError(f"encoder {self.encoder_name!r} gives one vector per row; output: tokens is not available")
        if not isinstance(train_blocks, int) or isinstance(train_blocks, bool) or train_blocks < 0:
            raise SchemaError(f"encoder {self.encoder_name!r}: train_blocks must be a whole number >= 0, got {train_blocks!r}")
        if (trainable or train_blocks) and self.runtime != "torch":
            raise SchemaError(
                f"encoder {self.encoder_name!r} runs in {self.runtime}, which computes no gradients: it is frozen-only. "
                "Remove trainable/train_blocks; the fusion and head on top of it still learn"
            )
        self.trainable, self.train_blocks, self.output = bool(trainable), train_blocks, output

    def _setup(self) -> None:
        """Freeze what should not learn; call once the weights are loaded."""
        self.requires_grad_(self.trainable)
        if self.runtime == "torch" and self.train_blocks and not self.trainable:
            blocks = self.blocks()
            if self.train_blocks > len(blocks):
                raise SchemaError(
                    f"encoder {self.encoder_name!r} has {len(blocks)} blocks; train_blocks={self.train_blocks} is too many"
                )
            for block in blocks[-self.train_blocks :]:
                block.requires_grad_(True)
        self.train(self.training)

    # -- pickling (serve's model workers receive a pickled copy of the model) ------------------
    _runtime_attrs: ClassVar[tuple[str, ...]] = ()  # ONNX/CTranslate2 handles, which do not pickle

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._runtime_attrs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._runtime_attrs:
            self._load_runtime()  # reloaded from the installed package, with this process's threads

    def _load_runtime(self) -> None:
        """Create the runtime handles named in ``_runtime_attrs`` (ONNX/CTranslate2 towers)."""

    # -- what subclasses provide -----------------------------------------------------------
    def blocks(self) -> list[nn.Module]:
        """The backbone's blocks in order, input side first (torch towers)."""
        raise NotImplementedError

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        """Features of a batch whose rows are all present: ``(B, D)`` or ``(B, T, D)`` + mask."""
        raise NotImplementedError

    # -- the encoder contract ------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return not self.trainable and not self.train_blocks

    def train(self, mode: bool = True) -> Tower:
        """Frozen blocks stay in eval mode: batch statistics of a few rows would overwrite ImageNet's."""
        super().train(mode)
        if mode and not self.trainable and self.runtime == "torch":
            learning = {id(m) for b in (self.blocks()[-self.train_blocks :] if self.train_blocks else []) for m in b.modules()}
            for m in self.modules():
                if id(m) not in learning and not (m is self and self.train_blocks):
                    m.training = False
        return self

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        present = batch.present.nonzero().flatten()
        if not len(present) and self.output == "pooled":
            return batch.data.new_zeros((len(batch), self.output_dim), dtype=torch.float32), None
        # Absent rows are not computed; for tokens with none present, one row is, for the shape.
        rows = present if len(present) else torch.zeros(1, dtype=torch.long, device=batch.data.device)
        part = batch.index(rows)
        grad = torch.no_grad() if self.frozen else contextlib.nullcontext()
        with grad:
            out, mask = self.compute(part)
        full = out.new_zeros((len(batch),) + tuple(out.shape[1:]))
        full_mask = None if mask is None else mask.new_zeros((len(batch),) + tuple(mask.shape[1:]))
        if len(present):
            full = full.index_copy(0, present, out)
            if mask is not None:
                full_mask = full_mask.index_copy(0, present, mask)
        return full, full_mask

    @torch.no_grad()
    def embed(self, batch: ModalityBatch) -> Tensor:
        """Frozen features of a batch, pooled to ``(B, D)`` (or tokens, with ``output: tokens``):
        eval mode, no autograd, absent rows zero. The same row always gives the same vector."""
        was_training = self.training
        self.eval()
        try:
            out, mask = self(batch)
        finally:
            self.train(was_training)
        return out

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes this tower's frozen features, as plain data: a cache keys on
        it together with each row's content hash."""
        from tessera import zoo

        return {
            "tower": self.encoder_name,
            "packages": zoo.versions(self.encoder_name),
            "options": self.options(),
            "preprocessing": dict(self.input_options),
        }

    def options(self) -> dict[str, Any]:
        """The tower's own options that change its output (subclasses add theirs)."""
        return {"output": self.output}


def spatial_output(fmap: Tensor, output: str) -> tuple[Tensor, Tensor | None]:
    """A CNN's final ``(B, C, H, W)`` map as one vector per image (mean over positions),
    or as ``H*W`` tokens ``(B, H*W, C)`` with an all-valid mask."""
    if output == "pooled":
        return fmap.mean(dim=(2, 3)), None
    tokens = fmap.flatten(2).transpose(1, 2)
    return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


def valid_lengths(batch: ModalityBatch) -> list[int]:
    """Samples of real audio in each row of a waveform batch (at least 1), from its mask."""
    if batch.mask is None:
        return [int(batch.data.shape[1])] * len(batch)
    return [max(int(n), 1) for n in batch.mask.sum(dim=1).tolist()]


def frame_output(frames: Tensor, mask: Tensor, output: str) -> tuple[Tensor, Tensor | None]:
    """Per-frame audio features ``(B, T, D)`` as their mean over valid frames, or as tokens + mask."""
    if output == "pooled":
        return masked_mean(frames, mask), None
    return frames.masked_fill(~mask.unsqueeze(-1), 0.0), mask
