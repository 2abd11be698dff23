"""A multimodal model is composed, not subclassed: one encoder per input, a fusion, a head.

``build_model`` is the factory: each fitted preprocessor states the facts its encoder needs
(channels, vocabulary size, number of mel bands ...: ``encoder_facts``) and its default
encoder, so a config only names components and their sizes. A forward returns a
:class:`ModelOutput`: the logits, and what the training loss needs besides them (per-input
logits, presence after modality dropout).

The logits a model answers with may blend the fused output with its per-input heads
(``output_weights``, chosen on validation by :func:`tessera.train.choose_output`): a fused
model must never be worse than its best single input, and when one input is noise the
honest answer is to fall back to the others.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from tessera.encoders import create_encoder
from tessera.errors import SchemaError
from tessera.fusion import FUSIONS, Fusion, create_fusion
from tessera.fusion.base import pooled_present
from tessera.pipeline import Pipeline
from tessera.preprocess import ModalityBatch, Preprocessor
from tessera.settings import Settings


class ModelConfig(Settings):
    """The ``model`` section: which fusion, how wide, which encoder per input, and the regularisers."""

    section: ClassVar[str] = "model"
    fusion: str = "concat"
    fusion_options: dict[str, Any] = {}
    dim: int = 128  # encoder width, unless an encoder's options say otherwise
    encoders: dict[str, dict[str, Any]] = {}  # input -> {name, options}
    modality_dropout: float = 0.0  # chance, per sample and input, to hide an input during training
    head_dropout: float = 0.1
    # A linear classifier per input (models with two or more inputs), trained by an auxiliary
    # loss (see train.py): it keeps a slow input learning and gives the fallback its candidates.
    aux_heads: bool = True
    aux_weight: Annotated[float, Field(ge=0)] = 0.5  # weight of that loss, the mean over inputs of each input's own loss

    @property
    def aux_loss_weight(self) -> float:
        """The weight the training loop gives the per-input loss: ``aux_weight`` with ``aux_heads``, else 0."""
        return self.aux_weight if self.aux_heads else 0.0


@dataclass
class ModelOutput:
    """What a forward returns. ``logits``: ``(B, num_outputs)``.

    ``unimodal_logits``: per input ``(B, num_outputs)``, rows where the input is absent (or
    was dropped) zeroed; empty unless the model has aux heads or a fusion with per-input
    heads. ``present``: per input ``(B,)``, after modality dropout.
    """

    logits: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]


def build_encoder(name: str, pre: Preprocessor, dim: int, options: dict[str, Any]) -> nn.Module:
    from tessera.encoders import ENCODERS
    from tessera.encoders.input_options import check_prepared

    if name not in ENCODERS:
        return create_encoder(name)  # raises the registry's clear error
    check_prepared(name, pre)  # a pretrained tower's input must be prepared as its weights expect
    params = inspect.signature(ENCODERS[name].__init__).parameters
    kwargs = {k: v for k, v in pre.encoder_facts().items() if k in params}
    if "dim" in params:
        kwargs["dim"] = dim
    kwargs.update(options)
    return create_encoder(name, **kwargs)


class MultimodalModel(nn.Module):
    """Encoders, fusion, head; optionally one extra classifier per input (``aux_heads``).

    Per-input classifiers let training see how well each input does alone, which the fused
    loss hides: a dominant input can leave the others under-trained (modality imbalance,
    Wang et al., CVPR 2020, "What Makes Training Multi-modal Classification Networks Hard?").
    Late and hybrid fusions already classify each input, so their logits are reused.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: Fusion, num_outputs: int, config: ModelConfig) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        fusion_heads = fusion.produces_logits
        if fusion_heads:  # late/hybrid fusions end in their own heads
            self.head: nn.Module = nn.Identity()
        else:
            self.head = nn.Sequential(nn.Dropout(config.head_dropout), nn.Linear(fusion.output_dim, num_outputs))
        self.modality_dropout = config.modality_dropout
        # Empty unless asked for, so models saved without them load unchanged.
        self.aux_heads = nn.ModuleDict()
        if config.aux_heads and not fusion_heads and len(encoders) > 1:
            self.aux_heads.update({n: nn.Linear(e.output_dim, num_outputs) for n, e in encoders.items()})
        # Per-input logits come from the aux heads or, with late/hybrid fusion, from the fusion.
        self.has_unimodal_logits = bool(self.aux_heads) or fusion_heads
        # How the answer mixes the fused logits (first) with each input's own (encoder order):
        # the fused output alone until training chooses otherwise on validation.
        self.register_buffer("output_weights", fused_only(len(encoders)))

    def forward(self, inputs: dict[str, ModalityBatch]) -> ModelOutput:
        features, masks, present = self.encode(inputs)
        fused = self.fusion(features, masks, present)
        logits = self.head(fused.fused)
        if self.aux_heads:
            unimodal = {n: self._aux_logits(n, features[n], masks[n], present[n]) for n in self.aux_heads}
        else:
            unimodal = dict(fused.unimodal_logits)
        if unimodal and bool(self.output_weights[1:].any()):
            logits = blend_logits(logits, [unimodal[n] for n in self.encoders], [present[n] for n in self.encoders], self.output_weights)
        return ModelOutput(logits, unimodal, present)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # Models saved before the output could be blended answered with the fused logits alone.
        state_dict.setdefault(prefix + "output_weights", fused_only(len(self.encoders)))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _aux_logits(self, name: str, x: torch.Tensor, mask: torch.Tensor | None, present: torch.Tensor) -> torch.Tensor:
        """An input's own logits from its pooled features; rows where it is absent (or dropped) are zero."""
        logits = self.aux_heads[name](pooled_present(x, mask, present))
        return torch.where(present.unsqueeze(-1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device))

    def encode(self, inputs: dict[str, ModalityBatch]) -> tuple[dict, dict, dict]:
        present = {name: inputs[name].present for name in self.encoders}
        if self.training and self.modality_dropout > 0 and len(present) > 1:
            present = drop_modalities(present, self.modality_dropout)
        features, masks = {}, {}
        for name, enc in self.encoders.items():
            features[name], masks[name] = enc.encoded(inputs[name])
        return features, masks, present


def fused_only(n_inputs: int) -> torch.Tensor:
    """Output weights that answer with the fused logits alone."""
    return torch.tensor([1.0] + [0.0] * n_inputs)


def blend_logits(
    fused: torch.Tensor, unimodal: list[torch.Tensor], present: list[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """``weights[0] * fused + sum(weights[i] * unimodal[i-1])``, renormalised per row over the parts it has.

    An input's logits are zero where it is absent, so its weight is left out in those rows;
    a row whose chosen parts are all absent answers with the fused logits. For classes a
    weighted mean of logits is a weighted product of the models' probabilities (each
    model's softmax constant cancels), so the blend is a proper ensemble for any task.
    """
    parts = torch.stack([fused, *unimodal], dim=1)  # (B, 1 + M, K)
    have = torch.stack([torch.ones_like(present[0]), *present], dim=1).to(parts.dtype)  # (B, 1 + M)
    w = weights.to(parts.dtype).unsqueeze(0) * have
    total = w.sum(dim=1, keepdim=True)
    fused_alone = torch.zeros_like(w)
    fused_alone[:, 0] = 1.0
    w = torch.where(total > 0, w / total.clamp(min=1e-12), fused_alone)
    return (w.unsqueeze(-1) * parts).sum(dim=1)


def drop_modalities(present: dict[str, torch.Tensor], p: float) -> dict[str, torch.Tensor]:
    """Hide each input with probability p per sample, always keeping one that was there."""
    names = list(present)
    stacked = torch.stack([present[n] for n in names], dim=1)  # (B, M)
    keep = (torch.rand(stacked.shape, device=stacked.device) >= p) & stacked
    empty = ~keep.any(dim=1) & stacked.any(dim=1)
    if empty.any():
        # Restore one random originally-present input for rows that lost all of them.
        scores = torch.rand(stacked.shape, device=stacked.device) * stacked
        pick = torch.nn.functional.one_hot(scores.argmax(dim=1), len(names)).bool()
        keep = torch.where(empty.unsqueeze(1), pick, keep)
    return {n: keep[:, i] for i, n in enumerate(names)}


def encoder_spec(pipeline: Pipeline, specs: dict[str, dict[str, Any]], name: str) -> tuple[str, dict[str, Any]]:
    """The encoder name and options for input ``name``: the config's ``{name, options}``, else the schema's, else the default."""
    spec = dict(specs.get(name, {}))
    pre = pipeline.preprocessors[name]
    enc_name = spec.pop("name", None) or pipeline.schema.inputs[name].encoder or pre.default_encoder
    options = dict(spec.pop("options", {}) or {})
    if spec:
        raise SchemaError(f"encoder for input '{name}': unknown key(s) {sorted(spec)}; use name and options")
    return enc_name, options


def build_encoders(
    pipeline: Pipeline, specs: dict[str, dict[str, Any]], dim: int, pinned: dict[str, dict[str, Any]] | None = None
) -> dict[str, nn.Module]:
    """One encoder per pipeline input (:func:`encoder_spec`); ``pinned`` options, per input, come first.

    ``pinned`` is how a saved model rebuilds the architecture it was trained with
    (:func:`versioned_options`, or an encoder's ``legacy_options`` for models saved before).
    """
    unknown = set(specs) - set(pipeline.preprocessors)
    if unknown:
        raise SchemaError(
            f"encoders given for unknown input(s) {sorted(unknown)}; inputs are {sorted(pipeline.preprocessors)}"
        )
    encoders = {}
    for name, pre in pipeline.preprocessors.items():
        enc_name, options = encoder_spec(pipeline, specs, name)
        encoders[name] = build_encoder(enc_name, pre, dim, {**(pinned or {}).get(name, {}), **options})
    return encoders


def versioned_options(model: MultimodalModel) -> dict[str, dict[str, Any]]:
    """Per input, the values of its encoder's versioned options (``arch``): what a saved model records."""
    return {
        name: {key: getattr(enc, key) for key in getattr(enc, "legacy_options", {})}
        for name, enc in model.encoders.items()
        if getattr(enc, "legacy_options", None)
    }


def legacy_options(pipeline: Pipeline, config: ModelConfig) -> dict[str, dict[str, Any]]:
    """Per input, the options that rebuild the encoder of a model saved before its options were versioned."""
    from tessera.encoders import ENCODERS

    out = {}
    for name in pipeline.preprocessors:
        enc_name, _ = encoder_spec(pipeline, config.encoders, name)
        legacy = getattr(ENCODERS.get(enc_name), "legacy_options", {}) if enc_name in ENCODERS else {}
        if legacy:
            out[name] = dict(legacy)
    return out


def build_model(pipeline: Pipeline, config: ModelConfig, pinned: dict[str, dict[str, Any]] | None = None) -> MultimodalModel:
    """The model a config describes; ``pinned``: per-input encoder options a saved model recorded (see :func:`build_encoders`)."""
    if pipeline.target is None:
        raise SchemaError("a supervised model needs a target column in the schema")
    encoders = build_encoders(pipeline, config.encoders, config.dim, pinned)
    dims = {n: e.output_dim for n, e in encoders.items()}
    options = dict(config.fusion_options)
    if FUSIONS.get(config.fusion).produces_logits:
        options["num_outputs"] = pipeline.target.num_outputs
    fusion = create_fusion(config.fusion, dims, **options)
    return MultimodalModel(encoders, fusion, pipeline.target.num_outputs, config)
