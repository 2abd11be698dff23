"""A text-only space from the real MiniLM gives the same vectors as sentence-transformers itself, and survives save/load."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.align import Embedder



def test_sentence_transformer_space_matches_the_library(minilm: str, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["a dog runs on the beach", "two children play football", "a red car parked outside"]
    embedder = Embedder.from_sentence_transformer(minilm, input_name="caption")
    assert embedder.inputs == {"caption": "text"} and embedder.dim == 384
    ours = embedder.embed("text", texts)
    reference = SentenceTransformer(minilm, device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    loaded = Embedder.load(embedder.save(tmp_path / "minilm-space"))
    np.testing.assert_allclose(loaded.embed("caption", texts), ours, atol=1e-6)
