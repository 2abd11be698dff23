"""The contract every fusion strategy follows, and the registry that creates them by name.

A fusion module takes per-input features keyed by input name — pooled ``(B, D_i)`` or
tokens ``(B, T_i, D_i)`` with a ``(B, T_i)`` mask — plus each input's ``present`` flags
``(B,)``, and returns a :class:`FusionOutput`: one ``(B, output_dim)`` tensor for the task
head, and for strategies that classify each input on its own (late, hybrid) those per-input
logits, returned rather than kept on the module so a forward has no hidden side effects.
Absent inputs must not leak into the result: that is what makes missing-modality training work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from tessera.encoders.base import masked_mean
from tessera.registry import Registry


@dataclass
class FusionOutput:
    """``fused``: ``(B, output_dim)``, logits when the strategy ``produces_logits``.

    ``unimodal_logits``: per input ``(B, num_outputs)``, rows where the input is absent
    zeroed; empty for strategies without per-input heads.
    """

    fused: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class Fusion(nn.Module):
    """Base class: subclasses set ``output_dim`` in ``__init__`` and implement ``forward``.

    ``produces_logits``: the strategy ends in its own classifier(s), takes ``num_outputs``,
    and the model adds no head of its own.
    """

    output_dim: int
    produces_logits: ClassVar[bool] = False

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError


FUSIONS: Registry[Fusion] = Registry("fusion", "tessera.fusion")
register_fusion = FUSIONS.register  # @register_fusion("name") on a Fusion subclass


def create_fusion(name: str, input_dims: dict[str, int], **options: Any) -> Fusion:
    return FUSIONS.create(name, input_dims, **options)


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
