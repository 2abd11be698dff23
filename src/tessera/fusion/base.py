"""Fusion registry: strategies are created by name from config, all with one interface.

A fusion module takes per-input features keyed by input name — pooled ``(B, D_i)`` or
tokens ``(B, T_i, D_i)`` with a ``(B, T_i)`` mask — plus each input's ``present`` flags
``(B,)``, and returns one ``(B, output_dim)`` tensor for the task head. Absent inputs
must not leak into the result: that is what makes missing-modality training work.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from tessera.encoders.base import masked_mean
from tessera.errors import SchemaError
from tessera.registry import check_options

FUSIONS: dict[str, type[nn.Module]] = {}


def register_fusion(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        FUSIONS[name] = cls
        return cls

    return deco


def create_fusion(name: str, input_dims: dict[str, int], **options: Any) -> nn.Module:
    import tessera.fusion  # noqa: F401  (registers the built-in strategies)

    if name not in FUSIONS:
        raise SchemaError(f"unknown fusion {name!r}; known: {sorted(FUSIONS)}")
    cls = FUSIONS[name]
    check_options(cls, options, what=f"fusion '{name}'", supplied=("input_dims",))
    return cls(input_dims, **options)


def pool(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, D) stays; (B, T, D) becomes the mean over valid tokens (zeros when none are valid)."""
    if features.dim() == 2:
        return features
    if mask is None:
        return features.mean(dim=1)
    w = mask.unsqueeze(-1).to(features.dtype)
    return (features * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


# -- helpers shared by the strategies ------------------------------------------------------
# Each one exists so that an absent input or a padded token can never reach the output,
# not even as NaN/inf times zero: values are selected with ``torch.where``, not multiplied.


def feed_forward(dim: int, dropout: float) -> nn.Sequential:
    """The pre-norm transformer MLP (``x + feed_forward(x)``) used after cross-attention."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, 4 * dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(4 * dim, dim),
        nn.Dropout(dropout),
    )


def pooled_present(features: torch.Tensor, mask: torch.Tensor | None, present: torch.Tensor) -> torch.Tensor:
    """One ``(B, D)`` vector per sample, exactly zero where the input is absent."""
    x = features if features.dim() == 2 else masked_mean(features, mask)
    return torch.where(present.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def as_tokens(
    features: torch.Tensor, mask: torch.Tensor | None, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``(B, T, D)`` and a ``(B, T)`` validity mask; a pooled input is one token valid iff present.

    Invalid tokens are zeroed so that their content cannot leak through residual paths.
    """
    if features.dim() == 2:
        tokens, valid = features.unsqueeze(1), present.unsqueeze(1)
    else:
        tokens = features
        every = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        valid = (every if mask is None else mask.bool()) & present.unsqueeze(1)
    tokens = torch.where(valid.unsqueeze(-1), tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
    return tokens, valid


def presence_matrix(present: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """``(B, M)`` bool, one column per input in ``names`` order."""
    return torch.stack([present[n].bool() for n in names], dim=1)


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over valid entries only; a slice with none valid gives zeros, not NaN."""
    scores = scores.masked_fill(~valid, float("-inf"))
    any_valid = valid.any(dim=dim, keepdim=True)
    weights = torch.softmax(torch.where(any_valid, scores, torch.zeros_like(scores)), dim=dim)
    return torch.where(valid, weights, torch.zeros_like(weights))


def masked_attention(
    attn: nn.MultiheadAttention, query: torch.Tensor, keys: torch.Tensor, key_valid: torch.Tensor
) -> torch.Tensor:
    """``attn(query, keys, keys)`` honouring ``key_valid`` ``(B, S)``; rows with no valid key get zeros.

    A key-padding mask hiding every key makes softmax NaN, so such rows attend to their
    first key (as :class:`~tessera.encoders.base.MaskedTransformer` does) and are zeroed after.
    """
    has_key = key_valid.any(dim=1)
    attend = key_valid.clone()
    attend[:, 0] |= ~has_key
    out, _ = attn(query, keys, keys, key_padding_mask=~attend, need_weights=False)
    return torch.where(has_key.view(-1, 1, 1), out, torch.zeros((), dtype=out.dtype, device=out.device))
