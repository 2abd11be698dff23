"""The captioner to beat: describe a new image with the caption of the most similar training image.

A nearest-neighbour captioner (Devlin et al., 2015, "Exploring Nearest Neighbor Approaches
for Image Captioning") writes nothing new, yet scores well on BLEU and CIDEr, because
photos of a dataset repeat their scenes. A generator that cannot beat it has learnt the
dataset's phrasing, not the image. Similarity is cosine between the features of the same
image tower the generator reads; of the neighbour's captions, the one that agrees most with
the others (highest CIDEr-D against them) is returned, as a single caption written by one
annotator can be idiosyncratic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from tessera.errors import SchemaError
from tessera.generate.metrics import consensus_captions
from tessera.generate.model import Encoded


def pooled(encoded: Encoded) -> np.ndarray:
    """One vector per input: the mean of its valid encoder tokens."""
    mask = encoded.mask.unsqueeze(-1).to(encoded.tokens.dtype)
    return (torch.nan_to_num((encoded.tokens * mask).sum(1) / mask.sum(1).clamp(min=1))).numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class NearestCaption:
    """Fitted on training images' features and their captions; :meth:`predict` captions new features."""

    def __init__(self, features: np.ndarray, captions: Sequence[Sequence[str]]) -> None:
        if len(features) != len(captions):
            raise SchemaError(f"got features of {len(features)} images but captions of {len(captions)}")
        if not len(captions) or any(isinstance(c, str) or not len(c) for c in captions):
            raise SchemaError("every training image needs a non-empty list of captions")
        self.features = _unit(features)
        self.captions = [list(c)[i] for c, i in zip(captions, consensus_captions([list(c) for c in captions]))]

    def neighbours(self, features: np.ndarray) -> np.ndarray:
        """The index of each query's nearest training image (cosine)."""
        query = _unit(features)
        if query.shape[1] != self.features.shape[1]:
            raise SchemaError(f"query features are {query.shape[1]}-d, the training images' {self.features.shape[1]}-d")
        return (query @ self.features.T).argmax(1)

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.captions[i] for i in self.neighbours(features)]
