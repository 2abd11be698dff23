"""Fusion registry: strategies are created by name from config, all with one interface.

A fusion module takes per-input features keyed by input name — pooled ``(B, D_i)`` or
tokens ``(B, T_i, D_i)`` with a ``(B, T_i)`` mask — plus each input's ``present`` flags
``(B,)``, and returns one ``(B, output_dim)`` tensor for the task head. Absent inputs
must not leak into the result: that is what makes missing-modality training work.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from tessera.errors import SchemaError

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
    params = inspect.signature(cls.__init__).parameters
    known = [k for k in params if k not in ("self", "input_dims")]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise SchemaError(f"unknown option(s) {unknown} for fusion '{name}'; known: {known}")
    return cls(input_dims, **options)


def pool(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, D) stays; (B, T, D) becomes the mean over valid tokens (zeros when none are valid)."""
    if features.dim() == 2:
        return features
    if mask is None:
        return features.mean(dim=1)
    w = mask.unsqueeze(-1).to(features.dtype)
    return (features * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
