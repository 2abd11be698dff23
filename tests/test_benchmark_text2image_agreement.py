"""benchmarks/text2image_agreement.py: zero-shot candidates are one held-out paraphrase per class, of the same wording."""

from __future__ import annotations

import numpy as np


class FakeSpace:
    """Images carry their class as the pixel value; a prompt embeds as its class's one-hot (nothing trained)."""

    text = "caption"

    def __init__(self, held: list[tuple[int, str]], classes: int) -> None:
        self.of = {c: label for label, c in held}
        self.classes = classes
        self.embedder = self

    def embed(self, _name: str, prompts: list[str]) -> np.ndarray:
        return np.eye(self.classes, dtype=np.float32)[[self.of[p] for p in prompts]]

    def embed_arrays(self, images: np.ndarray) -> np.ndarray:
        return np.eye(self.classes, dtype=np.float32)[images[:, 0, 0, 0].astype(int)]


def test_prompt_scorer_candidates_and_scores(benchmark_module):
    bench = benchmark_module("text2image_agreement")
    held = bench.CAPTIONS["fashion_mnist"].pairs("heldout")
    scorer = bench.PromptScorer(FakeSpace(held, 10), held)
    assert len(scorer.candidates) == 3
    for j, cand in scorer.candidates.items():  # one prompt per class, each its class's j-th paraphrase
        assert [scorer.labels[i] for i in cand] == list(range(10)) and all(scorer.variant[i] == j for i in cand)
    index = np.arange(len(held))
    right = np.broadcast_to(scorer.labels[:, None, None, None], (len(held), 2, 2, 1)).astype(np.uint8)
    s = scorer.score(right, index)
    assert s["zero_shot"].all() and np.allclose(s["cosine"], 1.0)
    wrong = ((right.astype(int) + 1) % 10).astype(np.uint8)
    s = scorer.score(wrong, index)
    assert not s["zero_shot"].any() and np.allclose(s["cosine"], 0.0)
    assert (s["zero_shot_class"] == (scorer.labels + 1) % 10).all()
