"""`tessera data examples`: the README's sample files, drawn from the data home."""

import pandas as pd
import pytest

from tessera.datasets.examples import CLASSES, SIZES, write_examples
from tessera.errors import DataError


@pytest.mark.realdata
def test_sample_files_are_written_with_their_media_and_licence(shared_data, tmp_path):
    out = write_examples(tmp_path / "examples", home=shared_data)
    products, test, new = (pd.read_csv(out / f"{n}.csv") for n in ("products", "test", "new_products"))
    assert (len(products), len(test), len(new)) == (SIZES["products"], SIZES["test"], SIZES["new_products"])
    assert set(products["label"]) == set(test["label"]) == set(CLASSES)
    assert set(products["split"]) == {"train", "val", "test"} and set(test["split"]) == {"test"}
    assert "label" not in new.columns and "split" not in new.columns
    images = pd.concat([products, test, new])["image"]
    assert images.is_unique and all((out / p).is_file() for p in images)  # no row appears in two files
    assert (out / "query.jpg").is_file() and "MIT" in (out / "README.md").read_text()
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert total < 2_000_000  # a few hundred KB of photos
    again = write_examples(tmp_path / "examples", home=shared_data)  # replaced whole, same draw
    pd.testing.assert_frame_equal(pd.read_csv(again / "products.csv"), products)


def test_a_missing_data_home_is_named(tmp_path):
    with pytest.raises(DataError, match="fashion_products/table.csv, which does not exist: set TESSERA_DATA"):
        write_examples(tmp_path / "examples", home=tmp_path / "nowhere")
