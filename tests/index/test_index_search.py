"""Table -> index -> cross-modal search, on the tiny table where red/blue images pair with "red"/"blue" captions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.align import Embedder, fit_alignment
from tessera.align.embedder import compose
from tessera.errors import DataError, SchemaError, TesseraError
from tessera.index import VectorIndex
from tessera.index.build import index_table
from tessera.index.search import Searcher
from tessera.pipeline import Pipeline, cache_split
from tessera.schema import Schema
from tessera.table import read_table


@pytest.fixture
def trained(tiny_table, tiny_schema, tmp_path):
    schema = Schema.from_dict({"inputs": {k: tiny_schema["inputs"][k] for k in ("image", "caption")}})
    table = read_table(tiny_table)
    pipeline = Pipeline.fit(table.frame, schema)
    torch.manual_seed(0)
    embedder = Embedder.create(pipeline, dim=16, encoder_dim=32)
    split = cache_split(pipeline, pipeline.dataset(table, with_target=False))
    fit_alignment(embedder.model, split, epochs=25, batch_size=16, lr=3e-3, seed=0, device="cpu")
    embedder.model.eval()
    path = embedder.save(tmp_path / "embedder")
    return embedder, path, tiny_table


def is_red(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose training caption said "a red square" (image bit a = label // 2 is 0 there)."""
    return (frame["label"].to_numpy() // 2) == 0


def test_embedder_round_trip_and_raw_values(trained) -> None:
    embedder, path, table = trained
    loaded = Embedder.load(path)
    assert loaded.inputs == {"image": "image", "caption": "text"}
    texts = ["a red square", "a blue square at night"]
    a, b = embedder.embed("caption", texts), loaded.embed("text", texts)  # by input name or by modality
    assert a.shape == (2, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    image_bytes = (table.parent / "img/1.png").read_bytes()
    by_path = embedder.embed("image", ["img/1.png"], base_dir=table.parent)
    np.testing.assert_allclose(by_path, embedder.embed("image", [image_bytes]), atol=1e-6)
    with pytest.raises(SchemaError, match="unknown input 'audio'"):
        embedder.embed("audio", ["x.wav"])
    with pytest.raises(DataError, match="row 0"):
        embedder.embed("image", [b"not an image"])


def test_index_build_search_update_and_prune(trained, tmp_path) -> None:
    embedder, path, table = trained
    out = tmp_path / "index"
    result = index_table(embedder, table, out, "image", embedder_path=path)
    assert result.counts.added == 48 and len(result.index) == 48
    assert {"label", "price", "color", "path", "thumbnail"} <= set(result.index.metadata_columns)
    thumb = result.index.get(["0"], columns=["thumbnail"])["thumbnail"].iloc[0]
    assert thumb[:2] == b"\xff\xd8"  # a JPEG

    searcher = Searcher.open(out)  # finds the embedder through the index's record
    hits = searcher.search({"text": "a red square"}, k=10)
    assert list(hits["rank"]) == list(range(1, 11)) and hits["score"].is_monotonic_decreasing
    assert is_red(hits).mean() >= 0.9, hits
    blue = searcher.search({"text": "a blue square"}, k=8, where="color = 'x'")  # 8 of the 16 'x' rows match
    assert len(blue) == 8 and (~is_red(blue)).mean() >= 7 / 8 and set(blue["color"]) == {"x"}

    # Rebuilding unchanged is free; an edited file is re-embedded; rows gone from the table are pruned.
    again = index_table(embedder, table, out, "image", embedder_path=path)
    assert (again.counts.added, again.counts.updated, again.counts.unchanged) == (0, 0, 48)
    frame = pd.read_csv(table)
    (table.parent / "img/0.png").write_bytes((table.parent / "img/3.png").read_bytes())
    smaller = table.parent / "smaller.csv"
    frame.iloc[:40].to_csv(smaller, index=False)
    third = index_table(embedder, smaller, out, "image", embedder_path=path, prune=True, dedupe=False)  # 0.png is now 3.png
    assert (third.counts.added, third.counts.updated, third.counts.unchanged, third.deleted) == (0, 1, 39, 8)
    vec = VectorIndex.open(out).get(["0", "3"], columns=["vector"])["vector"]
    np.testing.assert_allclose(vec.iloc[0], vec.iloc[1], atol=1e-6)


def test_composed_query_and_bad_rows(trained, tmp_path) -> None:
    embedder, path, table = trained
    frame = pd.read_csv(table)
    frame.loc[5, "image"] = "img/missing.png"
    bad = table.parent / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(DataError, match="row 5"):
        index_table(embedder, bad, tmp_path / "strict", "image")
    result = index_table(embedder, bad, tmp_path / "lenient", "image", on_error="skip", embedder_path=path)
    assert len(result.index) == 47 and len(result.skipped) == 1 and "5" not in result.index.ids()

    searcher = Searcher.open(tmp_path / "lenient")
    # "like this blue image, but red": weighting the text up moves results from blue to red.
    blue_image = str(table.parent / "img/1.png")
    assert not is_red(frame.iloc[[1]])[0]
    like = searcher.search([("image", blue_image)], k=10)
    composed = searcher.search([("image", blue_image), ("text", "a red square")], weights=[0.3, 1.0], k=10)
    assert is_red(composed).mean() > is_red(like).mean()
    with pytest.raises(TesseraError, match="cancel out"):
        compose([np.ones(4), np.ones(4)], [1.0, -1.0])
    with pytest.raises(TesseraError, match="needs a query"):
        searcher.search([], k=3)


def test_a_file_on_several_rows_is_stored_once(trained, tmp_path) -> None:
    """Issue 18: a photo with 5 captions is 5 rows; the index stored it 5 times (5 identical hits per query)."""
    embedder, path, table = trained
    frame = pd.read_csv(table)
    frame.loc[10:14, "image"] = "img/3.png"  # rows 3 and 10-14: one file
    (table.parent / "img" / "copy.png").write_bytes((table.parent / "img" / "4.png").read_bytes())
    frame.loc[20, "image"] = "img/copy.png"  # same bytes as row 4 under another name
    frame.to_csv(table, index=False)
    result = index_table(embedder, table, tmp_path / "index", "image", embedder_path=path)
    assert result.duplicates == 6 and len(result.index) == 48 - 6
    assert set(result.index.ids()) == {str(i) for i in range(48)} - {"10", "11", "12", "13", "14", "20"}
    hits = Searcher.open(tmp_path / "index").search([("image", str(table.parent / "img" / "3.png"))], k=5)
    assert hits["path"].tolist().count("img/3.png") == 1
    kept = index_table(embedder, table, tmp_path / "all", "image", embedder_path=path, dedupe=False)
    assert kept.duplicates == 0 and len(kept.index) == 48
