"""A shared embedding space for every input: contrastive alignment, retrieval metrics, zero-shot classification."""

from tessera.lazy import lazy_exports

# Exported lazily (see tessera.lazy): the CLI imports tessera.align.cli without needing torch yet.
_EXPORTS = {
    "Embedder": "embedder", "compose": "embedder",
    "AlignModel": "model", "FeatureQueue": "model", "alignment_pairs": "model", "build_align_model": "model",
    "embed_split": "model", "mean_average_precision": "retrieval", "recall_at_k": "retrieval",
    "fit_alignment": "train", "paired_recall_at_1": "train", "paired_retrieval": "train", "TEMPLATES": "zeroshot", "ZeroShotClassifier": "zeroshot",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
