"""The feature matrix: a table's inputs as one matrix of numbers, for scikit-learn models and small networks.

Gradient boosting and linear models read plain numbers, so ``preset: best`` turns every
input into columns: tabular columns as they are (numbers; categories as integer codes,
the most frequent first), and every other input as a few principal components of a
frozen representation of it. Where a pretrained tower fits the modality and is installed
(``TOWERS``), that is the tower's embedding (computed once through its ``embed``: the
tower is frozen, so a row's vector never changes); otherwise, when the decoded tensor is
small (a 28x28 digit, a log-mel), the decoded values themselves. The components are
fitted on training rows; a saved featurizer re-applies them to any later table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tessera import zoo
from tessera.errors import SchemaError
from tessera.pipeline import Pipeline, StreamSplit
from tessera.preprocess import Preprocessor, create_preprocessor
from tessera.preprocess.categorical import category_key
from tessera.schema import InputSpec, Schema
from tessera.table import Table

# The tower each modality's features come from, where installed: the cheapest good one per modality.
TOWERS = {"image": "mobilenet_v2", "text": "sentence_transformer", "audio": "speech_embedding"}
TABULAR = ("numeric", "categorical")
DECODED = ("image", "audio", "timeseries")  # modalities whose decoded values are measurements (text's are token ids)
MAX_DECODED = 20_000  # values per row above which a decoded tensor is not used as features (a video)
COMPONENTS = 128  # principal components kept per input
PCA_ROWS = 4000  # training rows the components are fitted on (seeded): enough for 128 directions
EMBED_BATCH = 32
MAX_CATEGORIES = 250  # codes per categorical column (gradient boosting takes at most 255 bins)
SKOPS_TRUSTED = [  # types skops may load besides its defaults: exactly what these models hold
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


def save_estimator(estimator: Any, path: Path) -> None:
    """A fitted scikit-learn object as a skops file: loading it runs no code from the file (unlike pickle)."""
    import skops.io as sio

    sio.dump(estimator, path)


def load_estimator(path: Path) -> Any:
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
    if untrusted:
        raise SchemaError(f"{path}: refusing to load types this version of Tessera does not write: {untrusted}")
    return sio.load(path, trusted=SKOPS_TRUSTED)


@dataclass
class Block:
    """One non-tabular input's features: how it is decoded, what embeds it, and its components."""

    input: str
    source: str  # a tower's encoder name, or "decoded"
    preprocessor: Preprocessor
    encoder_options: dict[str, Any] = field(default_factory=dict)
    pca: Any = None  # sklearn PCA, fitted on training rows
    _tower: torch.nn.Module | None = None

    @property
    def columns(self) -> list[str]:
        n = 0 if self.pca is None else int(self.pca.n_components_)
        return [f"{self.input}.pc{i}" for i in range(n)]

    def tower(self) -> torch.nn.Module | None:
        if self.source == "decoded":
            return None
        if self._tower is None:
            from tessera.model import build_encoder

            self._tower = build_encoder(self.source, self.preprocessor, 128, dict(self.encoder_options)).eval()
        return self._tower

    def raw(self, table: Table, settings: Any, rows: int | None = None) -> np.ndarray:
        """``(n, D)`` frozen vectors of the table's rows (or its first ``rows``), in table order; NaN where absent."""
        frame = table.frame if rows is None else table.frame.iloc[:rows]
        pipeline = Pipeline(Schema({self.input: InputSpec(self.preprocessor.modality, self.preprocessor.columns)}), {self.input: self.preprocessor}, None)
        dataset = pipeline.dataset(Table(frame, table.base_dir, table.source), with_target=False, on_error=settings.on_error, validate=False)
        workers = 0 if settings.num_workers is None else settings.num_workers
        position = pd.Index(frame.index)
        tower = self.tower()
        out: np.ndarray | None = None
        for batch in StreamSplit(pipeline, dataset, workers, None).batches(EMBED_BATCH):
            x = batch.inputs[self.input]
            vectors = (frozen_vectors(tower, x) if tower is not None else x.data.flatten(1)).float().numpy()
            vectors[~x.present.numpy()] = np.nan
            if out is None:
                out = np.full((len(frame), vectors.shape[1]), np.nan, dtype=np.float32)
            out[position.get_indexer(batch.rows.numpy())] = vectors
        return out if out is not None else np.full((len(frame), 1), np.nan, dtype=np.float32)

    def fit(self, train: np.ndarray, seed: int) -> "Block":
        from sklearn.decomposition import PCA

        known = train[~np.isnan(train).any(axis=1)]
        if len(known) > PCA_ROWS:
            known = known[np.random.default_rng(seed).choice(len(known), PCA_ROWS, replace=False)]
        n = max(1, min(COMPONENTS, known.shape[1], len(known) - 1))
        self.pca = PCA(n_components=n, random_state=seed, svd_solver="randomized" if n < known.shape[1] // 2 else "full")
        self.pca.fit(known)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        out = np.full((len(raw), int(self.pca.n_components_)), np.nan, dtype=np.float32)
        known = ~np.isnan(raw).any(axis=1)
        if known.any():
            out[known] = self.pca.transform(raw[known])
        return out


@torch.no_grad()
def frozen_vectors(encoder: torch.nn.Module, batch: Any) -> torch.Tensor:
    """One vector per row from a frozen encoder: a tower's ``embed``, else the encoder in eval mode, pooled."""
    if hasattr(encoder, "embed"):
        return encoder.embed(batch)
    encoder.eval()
    out, mask = encoder(batch)
    if out.dim() == 3:
        from tessera.encoders.base import masked_mean

        out = masked_mean(out, mask)
    return out


def plan_blocks(pipeline: Pipeline, train: pd.DataFrame, use_towers: bool = True) -> tuple[list[Block], dict[str, str]]:
    """A block per non-tabular input that can have one, and a note per input on what it is made of (or why not)."""
    blocks, notes = [], {}
    for name, pre in pipeline.preprocessors.items():
        if pre.modality in TABULAR:
            continue
        block, notes[name] = block_for(name, pre, train, use_towers)
        if block is not None:
            blocks.append(block)
    return blocks, notes


def block_for(name: str, pre: Preprocessor, train: pd.DataFrame, use_tower: bool = True) -> tuple[Block | None, str]:
    """One input's block: its modality's tower where installed (and wanted), else its small decoded values."""
    tower = TOWERS.get(pre.modality)
    if use_tower and tower and zoo.is_installed(tower):
        from tessera.encoders.input_options import merge_input_options

        input_options, encoder_options = zoo.packaged_options(tower)
        options = merge_input_options(tower, pre.modality, input_options, where=f"input '{name}'")
        tower_pre = create_preprocessor(pre.modality, pre.columns, **options).fit(train)
        return Block(name, tower, tower_pre, encoder_options), f"{tower} embeddings"
    size = int(np.prod(pre.empty().data.shape))
    if pre.modality not in DECODED:
        return None, f"no features: no tower for {pre.modality} (installed, and not excluded)"
    if size > MAX_DECODED:
        return None, f"no features: no tower for {pre.modality}, and {size} decoded values per row are too many"
    return Block(name, "decoded", pre), f"its decoded values ({size} per row)"


class Featurizer:
    """Tabular columns and each block's components, as one DataFrame indexed like the table."""

    def __init__(self, numeric: list[str], categories: dict[str, list[str]], blocks: list[Block]) -> None:
        self.numeric = numeric
        self.categories = categories  # column -> its known values, code = position
        self.blocks = blocks

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline, train: pd.DataFrame, blocks: list[Block]) -> "Featurizer":
        numeric = [c for pre in pipeline.preprocessors.values() if pre.modality == "numeric" for c in pre.columns]
        categorical = [c for pre in pipeline.preprocessors.values() if pre.modality == "categorical" for c in pre.columns]
        categories = {}
        for c in categorical:
            counts = train[c].dropna().map(category_key).value_counts()
            categories[c] = sorted(counts.index, key=lambda k: (-counts[k], k))[:MAX_CATEGORIES]
        return cls(numeric, categories, blocks)

    @property
    def tabular_columns(self) -> list[str]:
        return self.numeric + list(self.categories)

    def tabular(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        for c in self.numeric:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
        for c, values in self.categories.items():
            codes = {v: i for i, v in enumerate(values)}
            out[c] = frame[c].map(lambda v: np.nan if pd.isna(v) else codes.get(category_key(v), np.nan)).astype(np.float64)
        return out

    def frame(self, table: Table, settings: Any, raw: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        """Every feature of the table's rows; ``raw`` (block -> vectors) when already computed."""
        parts = [self.tabular(table.frame)]
        for block in self.blocks:
            vectors = raw[block.input] if raw is not None else block.raw(table, settings)
            parts.append(pd.DataFrame(block.transform(vectors), index=table.frame.index, columns=block.columns))
        return pd.concat(parts, axis=1)

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        blocks = []
        for block in self.blocks:
            save_estimator(block.pca, folder / f"pca_{len(blocks)}.skops")
            blocks.append({"input": block.input, "source": block.source, "preprocessor": block.preprocessor.state_dict(),
                           "encoder_options": block.encoder_options})
        state = {"numeric": self.numeric, "categories": self.categories, "blocks": blocks}
        (folder / "features.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Featurizer":
        state = json.loads((folder / "features.json").read_text())
        blocks = []
        for i, b in enumerate(state["blocks"]):
            pre = Preprocessor.from_state(b["preprocessor"])
            blocks.append(Block(b["input"], b["source"], pre, b["encoder_options"], load_estimator(folder / f"pca_{i}.skops")))
        return cls(state["numeric"], state["categories"], blocks)


def seconds_per_row(block: Block, table: Table, settings: Any, rows: int = 16) -> float:
    """What embedding one row costs, from the table's first ``rows`` (the tower is loaded first, untimed)."""
    block.tower()
    start = time.perf_counter()
    block.raw(table, settings, rows=min(rows, len(table.frame)))
    return (time.perf_counter() - start) / max(1, min(rows, len(table.frame)))

