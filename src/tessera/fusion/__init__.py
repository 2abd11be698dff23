"""Fusion strategies, created by name through :func:`create_fusion`."""

from tessera.fusion.base import FUSIONS, Fusion, FusionOutput, create_fusion, register_fusion
from tessera.fusion import concat  # noqa: E402,F401  (registers)
from tessera.fusion import cross_attention, early, gated, hybrid, late, perceiver, tensor  # noqa: E402,F401

__all__ = ["FUSIONS", "Fusion", "FusionOutput", "create_fusion", "register_fusion"]
