"""Tessera: multimodal fusion, alignment and search."""

__version__ = "0.1.0"
