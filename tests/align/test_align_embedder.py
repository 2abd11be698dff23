"""A text-only space from the real MiniLM gives the same vectors as sentence-transformers itself, and survives save/load."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.align import Embedder
from tessera.errors import DataError



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


def test_plain_strings_take_the_tokenizer_path_and_match_the_table_path(minilm: str, monkeypatch) -> None:
    import pandas as pd

    from tessera.table import Table

    embedder = Embedder.from_sentence_transformer(minilm, input_name="caption")
    texts = ["dog", "a dog runs on the beach", "two children play football in the park on a sunny afternoon"]
    table = Table(pd.DataFrame({"caption": pd.Series(texts, dtype=object)}), None, "test")
    via_table = np.concatenate([v for _, v in embedder.embed_table(table, "caption")])
    calls = []
    monkeypatch.setattr(embedder, "embed_table", lambda *a, **k: calls.append(a) or iter(()))
    # two tokenizer batches, padded to their own longest rows: float rounding apart, the same vectors
    np.testing.assert_allclose(embedder.embed("caption", texts, batch_size=2), via_table, atol=1e-6)
    assert calls == []
    with pytest.raises(DataError, match="row 1, column 'caption'.*nothing to embed"):
        embedder.embed("caption", ["fine", None])  # one vector per value, so a missing one is an error, not left out
    assert calls == []
