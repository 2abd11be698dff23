"""A shared embedding space for every input: contrastive alignment, retrieval metrics, zero-shot classification."""

from tessera.align.embedder import Embedder, compose
from tessera.align.model import AlignModel, FeatureQueue, alignment_pairs, build_align_model, embed_split
from tessera.align.retrieval import mean_average_precision, recall_at_k
from tessera.align.train import fit_alignment, paired_recall_at_1
from tessera.align.zeroshot import TEMPLATES, ZeroShotClassifier

__all__ = [
    "TEMPLATES",
    "AlignModel",
    "Embedder",
    "FeatureQueue",
    "ZeroShotClassifier",
    "alignment_pairs",
    "build_align_model",
    "compose",
    "embed_split",
    "fit_alignment",
    "mean_average_precision",
    "paired_recall_at_1",
    "recall_at_k",
]
