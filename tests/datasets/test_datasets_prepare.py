"""prepare(): caching, forced rebuilds, argument checks and crash safety (on the offline synthetic recipe)."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tessera.datasets as datasets
from tessera.datasets import RECIPES, Prepared, cache_home, data_home, prepare, synthetic
from tessera.errors import SchemaError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "data"))


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    real = synthetic.build

    @functools.wraps(real)  # prepare() reads the recipe's arguments from the signature
    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "build", counting)
    return calls


def test_homes_follow_the_environment(tmp_path, monkeypatch):
    assert data_home() == tmp_path / "data"
    assert cache_home() == tmp_path / "cache"
    monkeypatch.delenv("TESSERA_DATA")
    monkeypatch.delenv("TESSERA_CACHE")
    assert data_home() == Path.home() / ".cache" / "tessera"
    assert cache_home() == Path.home() / ".cache" / "tessera" / "prepared"


def test_recipes_are_registered():
    assert set(RECIPES) == {"avmnist", "flickr8k", "fsdd", "esc50", "fashion_mnist", "synthetic"}


def test_prepare_writes_table_schema_and_card(tmp_path):
    prepared = prepare("synthetic", progress=False, n=30)
    assert isinstance(prepared, Prepared) and prepared.name == "synthetic"
    assert prepared.table_path.parent.parent == tmp_path / "cache" / "synthetic"
    assert prepared.table_path.suffix == ".parquet"
    frame = pd.read_parquet(prepared.table_path)
    assert len(frame) == 30 and sum(prepared.rows.values()) == 30
    assert yaml.safe_load(prepared.schema_path.read_text()) == prepared.schema
    assert prepared.schema_path.parent == prepared.card_path.parent == prepared.table_path.parent
    card = prepared.card_path.read_text()
    assert "| train | 21 |" in card and "`label`" in card and '"n": 30' in card


def test_second_call_reuses_the_cache(count_builds):
    first = prepare("synthetic", progress=False, n=30)
    mtime = first.table_path.stat().st_mtime_ns
    second = prepare("synthetic", progress=False, n=30)
    assert len(count_builds) == 1
    assert second.table_path == first.table_path
    assert second.table_path.stat().st_mtime_ns == mtime
    assert second.rows == first.rows and second.schema == first.schema


def test_force_rebuilds(count_builds):
    first = prepare("synthetic", progress=False, n=30)
    mtime = first.table_path.stat().st_mtime_ns
    again = prepare("synthetic", progress=False, n=30, force=True)
    assert len(count_builds) == 2
    assert again.table_path == first.table_path and again.table_path.stat().st_mtime_ns != mtime
    assert not [p for p in again.path.parent.iterdir() if p.name.startswith(".")], "no leftover temporary folders"


def test_changed_arguments_or_data_home_rebuild(tmp_path, count_builds):
    a = prepare("synthetic", progress=False, n=30)
    b = prepare("synthetic", progress=False, n=30, seed=1)
    c = prepare("synthetic", progress=False, n=30, cache_dir=tmp_path / "elsewhere")
    assert len({a.table_path, b.table_path}) == 2 and len(count_builds) == 3
    assert c.table_path.is_relative_to(tmp_path / "elsewhere")
    # Defaults are part of the key: spelling out a default is the same configuration.
    assert prepare("synthetic", progress=False, n=30, seed=0).table_path == a.table_path
    # Recipes that read raw data key on the data home too.
    key = datasets._cache_key
    assert key("fsdd", datasets.fsdd, {}, tmp_path / "x") != key("fsdd", datasets.fsdd, {}, tmp_path / "y")


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(SchemaError, match="unknown dataset recipe 'mnist'.*avmnist.*synthetic"):
        prepare("mnist")


def test_unknown_argument_lists_the_recipe_arguments():
    with pytest.raises(SchemaError, match=r"no argument\(s\) \['snr'\].*snr_db"):
        prepare("avmnist", snr=-5)


def test_crash_mid_build_leaves_no_cache(monkeypatch, tmp_path):
    @functools.wraps(synthetic.build)
    def broken(home, out_dir, **kwargs):
        (out_dir / "half.parquet").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "build", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare("synthetic", progress=False, n=30)
    folder = tmp_path / "cache" / "synthetic"
    assert not folder.exists() or not list(folder.iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    assert prepare("synthetic", progress=False, n=30).table_path.is_file()
