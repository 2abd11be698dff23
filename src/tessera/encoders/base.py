"""The contract every encoder follows, the registry that creates them by name, and shared pieces.

An encoder turns one input's :class:`~tessera.preprocess.base.ModalityBatch` into either one
vector per sample ``(B, D)`` (mask ``None``) or a token sequence ``(B, T, D)`` with a bool
mask ``(B, T)`` (True = valid token). Fusion models that only want a vector call ``pooled``;
attention-based fusion can use the tokens. Absent samples (``present=False``) always come
out as zeros, so fusion can rely on one convention whatever the encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tessera.errors import SchemaError, TesseraError
from tessera.registry import Registry

if TYPE_CHECKING:  # encoders only read .data/.present/.mask; no import-time link to the preprocessors
    from tessera.preprocess.base import ModalityBatch

ENCODERS: Registry[Encoder] = Registry("encoder", "tessera.encoders", attribute="encoder_name")
register_encoder = ENCODERS.register  # @register_encoder("name") on an Encoder subclass


def create_encoder(name: str, **kwargs: Any) -> Encoder:
    """Create an encoder by registry name; config mistakes fail with what would have been accepted."""
    return ENCODERS.create(name, **kwargs)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over valid tokens of ``(B, T, D)``; rows with no valid token give zeros, not NaN.

    ``torch.where`` rather than multiplying, so NaN/inf at masked positions cannot leak in.
    """
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1).to(x.dtype)


class Encoder(nn.Module):
    """Base class: subclasses set ``output_dim`` and implement ``forward``.

    ``legacy_options``: when an encoder's default architecture changes, the new one gets an
    option (``arch``) whose value the encoder keeps as an attribute of the same name; this
    maps each such option to the value that rebuilds models saved before it existed. A saved
    model records its encoders' values (:func:`tessera.model.versioned_options`), so it is
    rebuilt the same way whatever the defaults are when it is loaded.

    An encoder whose output is a fixed function of the row (a frozen pretrained tower) says
    so with ``frozen`` and names what its output depends on in ``cache_key``: the data side
    may then compute its features once per row and hand them over as a
    :class:`~tessera.preprocess.base.Features` batch (:mod:`tessera.features`), which
    :meth:`encoded` passes through instead of running the encoder again.
    """

    output_dim: int
    encoder_name: str  # set by @register_encoder
    legacy_options: ClassVar[dict[str, Any]] = {}

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError

    @property
    def frozen(self) -> bool:
        """Whether nothing in this encoder learns, so its output for a row never changes."""
        return False

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes a frozen encoder's output, as plain data (see :mod:`tessera.features`)."""
        raise TesseraError(f"encoder {self.encoder_name!r} does not name its features: they cannot be cached")

    def encoded(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        """``forward``, or the features the data side computed already (a ``Features`` batch)."""
        if not batch.is_features:
            return self(batch)
        if not self.frozen:
            raise TesseraError(
                f"encoder {self.encoder_name!r} learns, but its input arrived as precomputed frozen features; "
                "prepare the data with the same encoder options as the model (or with feature_cache: false)"
            )
        return batch.data, batch.mask

    def pooled(self, batch: ModalityBatch) -> Tensor:
        """One vector per sample, whichever form ``forward`` returns."""
        out, mask = self.encoded(batch)
        return out if mask is None else masked_mean(out, mask)


def zero_absent(x: Tensor, present: Tensor) -> Tensor:
    """Zero the rows of absent samples, whose zero-filled input would otherwise encode to a bias vector."""
    return x.masked_fill(~present.view(-1, *([1] * (x.dim() - 1))), 0.0)


class MaskedTransformer(nn.Module):
    """A pre-norm ``nn.TransformerEncoder`` that is safe for rows with no valid token.

    A key-padding mask that hides every key makes softmax return NaN, and absent samples
    are exactly such rows. Those rows attend to their first token instead, and every
    invalid output token is zeroed afterwards, so neither NaN nor padding content escapes.
    """

    def __init__(self, dim: int, depth: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise SchemaError(f"dim ({dim}) must be divisible by heads ({heads})")
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            return self.layers(x)
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(dim=1)
        out = self.layers(x, src_key_padding_mask=~attend)
        return out * mask.unsqueeze(-1).to(out.dtype)
