"""Perceiver fusion: a few learned latents read all modality tokens, then think among themselves.

Cross-attending from a fixed-size latent array makes the cost linear in the total number of
tokens, however many inputs and tokens there are (Perceiver, Jaegle et al., ICML 2021).
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.encoders.base import MaskedTransformer
from tessera.errors import SchemaError
from tessera.fusion.base import Fusion, FusionOutput, as_tokens, feed_forward, masked_attention, register_fusion


@register_fusion("perceiver")
class PerceiverFusion(Fusion):
    def __init__(
        self,
        input_dims: dict[str, int],
        dim: int = 64,
        num_latents: int = 16,
        heads: int = 4,
        depth: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise SchemaError(f"perceiver: dim ({dim}) must be divisible by heads ({heads})")
        self.names = list(input_dims)
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in input_dims.items()})
        self.type_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = feed_forward(dim, dropout)
        self.latent_transformer = MaskedTransformer(dim, depth, heads, dropout)
        self.output_dim = dim

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        present: dict[str, torch.Tensor],
    ) -> FusionOutput:
        tokens, valid = [], []
        for i, name in enumerate(self.names):
            x, v = as_tokens(features[name], masks[name], present[name])
            tokens.append(self.proj[name](x) + self.type_embedding[i])
            valid.append(v)
        keys = self.norm_tokens(torch.cat(tokens, dim=1))
        latents = self.latents.expand(len(keys), -1, -1)
        latents = latents + masked_attention(self.cross, self.norm_latents(latents), keys, torch.cat(valid, dim=1))
        latents = latents + self.ffn(latents)
        return FusionOutput(self.latent_transformer(latents, None).mean(dim=1))
