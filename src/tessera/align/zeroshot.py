"""Zero-shot classification: class names become text prompts, prompts become embeddings, nearest class wins.

As in CLIP (Radford et al. 2021, section 3.1.4), every class name is put into several
templates ("a photo of a {}."), each prompt is embedded by the text tower, and the unit
vectors of one class are averaged and re-normalised (prompt ensembling): the mean prompt
is less sensitive to any one phrasing than a single prompt. A sample's class scores are
the scaled cosine similarities of its embedding with each class vector.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from tessera.align.model import AlignModel
from tessera.preprocess import ModalityBatch
from tessera.preprocess.text import TextPreprocessor

# A few of CLIP's ImageNet templates, and sound prompts in the style of CLAP ("This is a sound of ...").
TEMPLATES: dict[str, tuple[str, ...]] = {
    "image": (
        "a photo of a {}.",
        "a picture of a {}.",
        "a close-up photo of a {}.",
        "a bad photo of a {}.",
        "a photo of the small {}.",
        "a photo of the large {}.",
    ),
    "audio": (
        "the sound of {}.",
        "this is a sound of {}.",
        "a recording of {}.",
        "{} can be heard.",
    ),
}


class ZeroShotClassifier:
    """Class vectors from prompts through ``model``'s ``text_input`` tower; scores any input's embeddings.

    ``predict_proba`` is a softmax over ``exp(logit_scale) * cosine``. For a SigLIP-trained
    model the sigmoid of each score gives independent per-class probabilities instead; the
    ranking, and so ``predict``, is the same either way.
    """

    def __init__(
        self,
        model: AlignModel,
        text_input: str,
        text_preprocessor: TextPreprocessor,
        classnames: Sequence[str],
        templates: Sequence[str] = ("a photo of a {}.",),
    ) -> None:
        if not classnames or not templates:
            raise ValueError("zero-shot classification needs at least one class name and one template")
        self.model = model
        self.classnames = list(classnames)
        self.templates = list(templates)
        prompts = [t.format(c) for c in self.classnames for t in self.templates]  # class-major
        ids, mask = text_preprocessor.encode_batch(prompts)
        device = next(model.parameters()).device
        batch = ModalityBatch(
            torch.from_numpy(ids), torch.ones(len(prompts), dtype=torch.bool), torch.from_numpy(mask)
        ).to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            emb = model.embed(text_input, batch).float()
        model.train(was_training)
        per_class = emb.view(len(self.classnames), len(self.templates), -1).mean(dim=1)
        self.class_embeddings = F.normalize(per_class, dim=-1)  # (C, dim)

    def logits(self, embeddings: Tensor) -> Tensor:
        """``(N, C)`` scaled cosine similarities between ``(N, dim)`` embeddings and the class vectors."""
        scale = float(self.model.logit_scale.detach().exp())
        emb = F.normalize(embeddings.float().to(self.class_embeddings.device), dim=-1)
        return scale * emb @ self.class_embeddings.T

    def predict_proba(self, embeddings: Tensor) -> Tensor:
        return self.logits(embeddings).softmax(dim=-1)

    def predict(self, embeddings: Tensor) -> Tensor:
        """Index into ``classnames`` of the best class per row."""
        return self.logits(embeddings).argmax(dim=-1)
