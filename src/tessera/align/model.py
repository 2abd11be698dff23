"""One shared embedding space for every input: each encoder, then a linear projection, then L2 norm.

Paired rows of a table (an image and its caption, a clip and its sound) are the only
supervision: a contrastive loss pulls each row's embeddings together and pushes other
rows' apart (CLIP: Radford et al. 2021). With an ``anchor``, every other input is bound to
the anchor only, so inputs never seen together still meet through it (ImageBind: Girdhar
et al. 2023, "ImageBind: One Embedding Space To Bind Them All"); without, every pair of
inputs is aligned. A pair's loss uses only the rows where both inputs are present, so a
table with missing cells still trains every pair it can.

The encoders are Tessera's own (built by :func:`tessera.model.build_encoder` from the
fitted preprocessors), so any registered encoder, pretrained towers included, can serve.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tessera.errors import SchemaError
from tessera.losses import clip_loss, siglip_loss
from tessera.model import build_encoders
from tessera.pipeline import CachedSplit, Pipeline
from tessera.preprocess import ModalityBatch
from tessera.tasks import tasks_where

LOSSES = ("clip", "siglip")
# Initial temperatures of the papers: CLIP 0.07; SigLIP t' = log 10, i.e. 0.1, with bias -10.
INIT_TEMPERATURE = {"clip": 0.07, "siglip": 0.1}
SIGLIP_INIT_BIAS = -10.0


def alignment_pairs(names: list[str], anchor: str | None) -> list[tuple[str, str]]:
    """Which inputs a loss term ties together: (anchor, other) for each other input, or every pair."""
    if anchor is None:
        return list(itertools.combinations(names, 2))
    return [(anchor, n) for n in names if n != anchor]


class FeatureQueue:
    """FIFO of each input's past embeddings (detached), used as extra negatives (MoCo: He et al. 2020).

    A softmax contrastive loss gets better with more negatives, and a batch that fits a
    laptop has few; keeping the last ``size`` embeddings enlarges the candidate set at no
    memory cost for gradients. MoCo keeps the queue consistent with a momentum encoder;
    here the queue comes from the live encoders, which works once they change slowly
    (Wang et al. 2020, "Cross-Batch Memory for Embedding Learning"). Keep ``size`` well
    below the training set size, or a row can meet its own past embedding as a negative.
    """

    def __init__(self, size: int, dim: int) -> None:
        if size < 1:
            raise SchemaError(f"feature queue size must be at least 1, got {size}")
        self.size = size
        self.dim = dim
        self._items: dict[str, Tensor] = {}

    def push(self, name: str, embeddings: Tensor) -> None:
        """Append ``(n, dim)`` embeddings; the oldest are dropped beyond ``size``."""
        if embeddings.shape[-1] != self.dim:
            raise SchemaError(f"feature queue holds {self.dim}-d embeddings, got {tuple(embeddings.shape)}")
        old = self._items.get(name)
        new = embeddings.detach() if old is None else torch.cat([old, embeddings.detach().to(old.device)])
        self._items[name] = new[-self.size :]

    def get(self, name: str) -> Tensor | None:
        """The stored embeddings, oldest first, or None when nothing was pushed for ``name``."""
        return self._items.get(name)

    def __len__(self) -> int:
        return max((len(v) for v in self._items.values()), default=0)


class AlignModel(nn.Module):
    """Encoders plus per-input linear projections into one ``dim``-d unit sphere, and a learnable temperature.

    ``init_temperature`` None takes the paper's value for the loss (CLIP 0.07, SigLIP 0.1).
    ``num_classes`` adds a linear classifier on the anchor's (else the first input's)
    embedding, for mixing a supervised loss into alignment (see :mod:`tessera.align.train`).
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        dim: int = 256,
        anchor: str | None = None,
        loss: str = "clip",
        init_temperature: float | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise SchemaError(f"alignment loss must be one of {LOSSES}, got {loss!r}")
        if anchor is not None and anchor not in encoders:
            raise SchemaError(f"anchor {anchor!r} is not one of the inputs {sorted(encoders)}")
        self.encoders = nn.ModuleDict(encoders)
        # No bias, as in CLIP: an absent row (encoded as zeros) then projects to zero, not to a shared point.
        self.heads = nn.ModuleDict({n: nn.Linear(e.output_dim, dim, bias=False) for n, e in encoders.items()})
        self.dim = dim
        self.anchor = anchor
        self.loss_type = loss
        self.pairs = alignment_pairs(list(encoders), anchor)
        temperature = init_temperature or INIT_TEMPERATURE[loss]
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS)) if loss == "siglip" else None
        self.classifier = nn.Linear(dim, num_classes) if num_classes else None

    def embed(self, name: str, batch: ModalityBatch) -> Tensor:
        """``(B, dim)`` unit vectors for one input (absent rows come out as zeros)."""
        return F.normalize(self.heads[name](self.encoders[name].pooled(batch)), dim=-1)

    def forward(self, inputs: dict[str, ModalityBatch]) -> dict[str, Tensor]:
        return {name: self.embed(name, inputs[name]) for name in self.encoders}

    def loss(
        self, embeddings: dict[str, Tensor], present: dict[str, Tensor], queue: FeatureQueue | None = None
    ) -> Tensor | None:
        """Mean over pairs of the pair's loss on the rows where both inputs are present; None if no pair has a row."""
        losses = []
        for a, b in self.pairs:
            rows = present[a] & present[b]
            if not rows.any():
                continue
            extra = (queue.get(a), queue.get(b)) if queue is not None else None
            if self.loss_type == "clip":
                losses.append(clip_loss(embeddings[a][rows], embeddings[b][rows], self.logit_scale, extra))
            else:
                losses.append(
                    siglip_loss(embeddings[a][rows], embeddings[b][rows], self.logit_scale, self.logit_bias, extra)
                )
        return torch.stack(losses).mean() if losses else None

    def supervised_loss(
        self, embeddings: dict[str, Tensor], present: dict[str, Tensor], target: Tensor
    ) -> Tensor | None:
        """Cross-entropy of the classifier on the anchor's (else first input's) embedding, where it is present."""
        name = self.anchor or next(iter(self.encoders))
        rows = present[name]
        if self.classifier is None or not rows.any():
            return None
        return F.cross_entropy(self.classifier(embeddings[name][rows]), target[rows].long())


@torch.no_grad()
def embed_split(model: AlignModel, split: CachedSplit, batch_size: int = 256) -> dict[str, tuple[Tensor, Tensor]]:
    """Each input's embeddings ``(N, dim)`` and presence ``(N,)`` over a split, in order, on CPU; sets eval mode.

    Only the inputs the split holds are embedded (an image-only gallery needs no text tower).
    """
    model.eval()
    device = next(model.parameters()).device
    names = [n for n in model.encoders if n in split.inputs]
    parts: dict[str, list[tuple[Tensor, Tensor]]] = {n: [] for n in names}
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        for name in names:
            emb = model.embed(name, batch.inputs[name])
            parts[name].append((emb.float().cpu(), batch.inputs[name].present.cpu()))
    return {n: (torch.cat([e for e, _ in p]), torch.cat([m for _, m in p])) for n, p in parts.items()}


def build_align_model(
    pipeline: Pipeline,
    dim: int = 256,
    encoders: dict[str, dict[str, Any]] | None = None,
    *,
    encoder_dim: int = 128,
    anchor: str | None = None,
    loss: str = "clip",
    init_temperature: float | None = None,
    classifier: bool = False,
) -> AlignModel:
    """An :class:`AlignModel` over every input of a fitted pipeline.

    ``encoders`` maps an input to ``{name, options}`` as in the model config; inputs not
    named get the schema's encoder or the modality default. ``encoder_dim`` is the width of
    the encoders themselves, ``dim`` that of the shared space. ``classifier`` adds a head
    over the pipeline's multiclass target.
    """
    built = build_encoders(pipeline, dict(encoders or {}), encoder_dim)
    num_classes = None
    if classifier:
        if pipeline.target is None or not pipeline.target.exclusive_classes:
            suitable = ", ".join(tasks_where(lambda cls: cls.exclusive_classes))
            raise SchemaError(f"classifier=True needs a target of one class per row in the schema (a task such as {suitable})")
        num_classes = pipeline.target.num_outputs
    return AlignModel(built, dim, anchor=anchor, loss=loss, init_temperature=init_temperature, num_classes=num_classes)

