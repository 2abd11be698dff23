"""``preset: best``: many models within a time budget, and a weighted ensemble of them chosen on validation rows.

In AutoGluon's spirit: no single model wins on every table, so train several kinds, cheapest
first, and let the validation rows weigh them. What is trained, in this order:

1. **Frozen features** (:mod:`tessera.feature_matrix`): each non-tabular input as principal
   components of a pretrained tower's embedding where one fits (images, text), else of its
   decoded values when small; skipped when embedding every row would take over half the
   time left.
2. **Gradient boosting** (scikit-learn's ``HistGradientBoosting``, native categories, early
   stopping on the validation rows) on every feature, and on the tabular columns alone.
3. **Linear models** (logistic or ridge regression, strength chosen on validation) on every
   feature, and on each input's features alone.
4. **Networks on the frozen features**: concat and late fusion of the components and the
   tabular inputs (small and fast: the towers already did the hard part).
5. **One network per input** and **fusion networks** on the raw inputs (the model config's
   fusion, and late fusion), trained as ``Predictor`` trains them on one shared decoded copy.
6. **Ensemble selection** (:func:`tessera.ensemble.greedy_weights`) over all of them.

The budget (``time_limit`` seconds) is checked before each model starts: a network's cost is
estimated from timed training steps, a tower's from embedding a few rows, a scikit-learn
model's from the last one of its family. A model that would not finish in time is not
started, and none is cut short, so nothing half-trained enters the ensemble; the last model
may end a little past the limit, and the first one always trains (an ensemble needs one). The leaderboard lists every model with its validation
score, its test score when the table has test rows (reported, never used to choose), its fit
seconds and its weight, and every model left out with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from tessera.ensemble import Ensemble, Member, greedy_weights
from tessera.errors import SchemaError
from tessera.feature_matrix import Block, Featurizer, block_for, plan_blocks, seconds_per_row
from tessera.model import ModelConfig, build_model
from tessera.pipeline import CachedSplit, Pipeline, StreamSplit
from tessera.prepare import SKIP_REPORT, Prepared, prepare
from tessera.schema import InputSpec, Schema
from tessera.table import Table, read_table
from tessera.train import TrainConfig
from tessera.workflows.compare import model_for_inputs

log = logging.getLogger("tessera.best")

# What a user may leave out (``exclude``), each a family of candidates.
FAMILIES = ("towers", "gbm", "linear", "features networks", "unimodal networks", "fusion networks")
GBM_COMPONENTS = 32  # components per input that gradient boosting reads (the leading ones)
TOWER_SHARE = 0.5  # frozen features may take at most this share of the time left
RESERVE = 0.05  # share of the budget kept for the selection and saving
PROBE_STEPS = 3  # timed training steps behind a network's estimate (the first one is not counted)
LINEAR_STRENGTHS = (0.03, 0.3, 3.0)  # logistic C, or 1 / ridge alpha, tried on the validation rows
SPLIT_COLUMN = "__best_split__"  # the shared split, handed to the features networks' preparation


@dataclass
class Budget:
    """Seconds left of ``limit`` (None: no limit), and whether a model of an estimated length may start."""

    limit: float | None
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return math.inf if self.limit is None else self.limit * (1 - RESERVE) - self.elapsed()

    def allows(self, seconds: float, share: float = 1.0) -> bool:
        return self.limit is None or seconds <= share * self.left()


@dataclass
class Trained:
    """A trained candidate: what predicts, and its scores per split (val, test) in the splits' row order."""

    member: Member
    scores: dict[str, np.ndarray]
    seconds: float


@dataclass
class BestResult:
    """The ensemble, its test metrics, and every trained model's scores (for paired comparisons)."""

    ensemble: Ensemble
    metrics: dict[str, Any]
    split_note: str
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> split (val, test) -> scores
    y: dict[str, np.ndarray] = field(default_factory=dict)  # split -> targets as the metrics take them
    prepared: Prepared | None = None  # the shared decoded splits, to train more models on the same rows


@dataclass
class Data:
    """Everything the candidates share: the decoded raw splits, row numbers, targets and features."""

    table: Table
    prepared: Prepared
    rows: dict[str, np.ndarray]
    encoded: dict[str, torch.Tensor]  # targets as the task encodes them (what summary_metrics takes)
    y: dict[str, np.ndarray]  # targets as the metrics take them
    features: pd.DataFrame | None = None
    featurizer: Featurizer | None = None

    @property
    def pipeline(self) -> Pipeline:
        return self.prepared.pipeline

    @property
    def task(self) -> Any:
        return self.pipeline.target


def split_rows(source: Any) -> np.ndarray:
    """Row numbers of a decoded split, in its order."""
    if isinstance(source, CachedSplit):
        return source.rows.numpy()
    if isinstance(source, StreamSplit):
        return np.asarray(source.dataset.rows)
    raise TypeError(f"not a split: {type(source).__name__}")


def fit_best(
    table: Any,
    schema: Any,
    target: Any,
    model: ModelConfig,
    train: TrainConfig,
    inference: Any,
    *,
    time_limit: float | None = None,
    exclude: Any = (),
    keep: Any = (),
    skip_report: Any = SKIP_REPORT,
) -> BestResult:
    """Train the candidates within ``time_limit`` seconds and select the ensemble (see the module docstring).

    ``exclude`` leaves out families of candidates (``FAMILIES``): ``towers`` computes no
    pretrained embeddings (features come from decoded values where small), the others skip
    those models.
    """
    check_exclude(exclude)
    budget = Budget(time_limit)
    data = shared_data(table, schema, target, model, train, keep, skip_report)
    task = data.task
    notes: list[dict[str, Any]] = []
    if task.tabular_learner is not None:
        build_features(data, inference, budget, notes, towers="towers" not in exclude)
    else:
        log.info("task %s: no scikit-learn model fits it; networks only", task.name)
    trained = train_candidates(candidates(data, model, train, exclude), data, budget, notes)

    weights = greedy_weights({r.member.name: r.scores["val"] for r in trained}, data.y["val"], task)
    for r in trained:
        r.member.weight = weights.get(r.member.name, 0.0)
    scores = {r.member.name: r.scores for r in trained}
    scores["ensemble"] = {split: sum(r.member.weight * r.scores[split] for r in trained) for split in trained[0].scores}
    leaderboard = make_leaderboard(data, trained, scores["ensemble"], notes)
    log.info("leaderboard:\n%s", leaderboard.to_string(index=False))
    reads_features = any(r.member.weight and r.member.kind != "network" for r in trained)
    info = {"schema": data.pipeline.schema.to_dict(), "time_limit": time_limit, "seconds": budget.elapsed()}
    ensemble = Ensemble(task, [r.member for r in trained], data.featurizer if reads_features else None, leaderboard, info)
    metrics = {}
    if "test" in data.y:
        metrics["test"] = task.summary_metrics(task.outputs_from_scores(scores["ensemble"]["test"]), data.encoded["test"])
    return BestResult(ensemble, metrics, data.prepared.split_note, scores, dict(data.y), data.prepared)


def shared_data(table: Any, schema: Any, target: Any, model: ModelConfig, train: TrainConfig, keep: Any, skip_report: Any) -> Data:
    """The table prepared once (one split, one decoded copy), with each split's rows and targets."""
    t = read_table(table)
    prepared = prepare(t, schema, target, train, encoders=model.encoders, skip_report=skip_report, keep=keep)
    if "val" not in prepared.splits:
        raise SchemaError("preset 'best' chooses its ensemble on validation rows: the table has none (give it val rows)")
    data = Data(t, prepared, {}, {}, {})
    for name, source in prepared.splits.items():
        data.rows[name] = split_rows(source)
        data.encoded[name] = torch.from_numpy(data.task.encode(t.frame.loc[data.rows[name]])[0])
        data.y[name] = data.task.true_values(data.encoded[name])
    log.info("rows: %s", prepared.split_note)
    return data


def train_candidates(todo: list[Candidate], data: Data, budget: Budget, notes: list[dict[str, Any]]) -> list[Trained]:
    """Train each candidate the budget allows, in order; the others are noted with their estimate."""
    task, trained = data.task, []
    last_seconds: dict[str, float] = {}  # a scikit-learn family's estimate: its previous model's time
    for c in todo:
        if budget.limit is None:
            seconds = 0.0
        else:
            seconds = c.estimate() if c.estimate is not None else last_seconds.get(c.family, 0.0)
        if trained and not budget.allows(seconds):  # the first model always trains: an ensemble needs one
            notes.append({"model": c.name, "kind": c.kind, "inputs": ", ".join(c.inputs),
                          "note": f"not started: estimated {seconds:.0f} s, {max(budget.left(), 0):.0f} s left"})
            log.info("%s: not started (estimated %.0f s, %.0f s left)", c.name, seconds, max(budget.left(), 0))
            continue
        log.info("training %s%s", c.name, f" (estimated {seconds:.0f} s)" if seconds else "")
        start = time.perf_counter()
        member, scores = c.fit()
        trained.append(Trained(member, scores, time.perf_counter() - start))
        last_seconds[c.family] = trained[-1].seconds
        main = task.main_metric.metric
        log.info("%s: val %s %.4f in %.0f s", c.name, main, task.main_score(data.y["val"], scores["val"]), trained[-1].seconds)
    return trained


# -- frozen features ---------------------------------------------------------------------------
def check_exclude(exclude: Any) -> None:
    unknown = sorted(set(exclude) - set(FAMILIES))
    if unknown:
        raise SchemaError(f"exclude: unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {list(FAMILIES)}")


def build_features(data: Data, inference: Any, budget: Budget, notes: list[dict[str, Any]], towers: bool = True) -> None:
    """The featurizer and every row's features, with the towers the budget allows."""
    train_frame = data.table.frame.loc[data.rows["train"]]
    blocks, why = plan_blocks(data.pipeline, train_frame, use_towers=towers)
    for name, note in why.items():
        log.info("features of %s: %s", name, note)
    kept: list[Block] = []
    raw: dict[str, np.ndarray] = {}
    used = np.concatenate(list(data.rows.values()))
    table = Table(data.table.frame.loc[used], data.table.base_dir, data.table.source)
    for block in blocks:
        if block.source != "decoded":
            seconds = seconds_per_row(block, table, inference) * len(used)
            if not budget.allows(seconds, TOWER_SHARE):
                note = f"{block.source} features not computed: estimated {seconds:.0f} s, over half of the {budget.left():.0f} s left"
                notes.append({"model": f"{block.source} features", "kind": "features", "inputs": block.input, "note": note})
                log.info("%s", note)
                name = block.input
                block, why = block_for(name, data.pipeline.preprocessors[name], train_frame, use_tower=False)
                log.info("features of %s instead: %s", name, why)
                if block is None:
                    continue
        start = time.perf_counter()
        raw[block.input] = decoded_values(data, block.input) if block.source == "decoded" else None
        if raw[block.input] is None:
            raw[block.input] = block.raw(table, inference)
        position = pd.Index(table.frame.index).get_indexer(data.rows["train"])
        block.fit(raw[block.input][position], seed=0)
        log.info("features of %s: %d components in %.0f s", block.input, len(block.columns), time.perf_counter() - start)
        kept.append(block)
    data.featurizer = Featurizer.for_pipeline(data.pipeline, train_frame, kept)
    data.features = data.featurizer.frame(table, inference, raw)
    if not data.featurizer.tabular_columns and not kept:
        data.featurizer, data.features = None, None


def decoded_values(data: Data, name: str) -> np.ndarray | None:
    """An input's decoded tensors, flattened, in the order of ``data.rows`` (None unless every split is cached)."""
    splits = data.prepared.splits
    if not all(isinstance(splits[s], CachedSplit) for s in data.rows):
        return None
    parts = []
    for s in data.rows:
        batch = splits[s].inputs[name]
        values = batch.data.flatten(1).float().numpy().copy()
        values[~batch.present.numpy()] = np.nan
        parts.append(values)
    return np.concatenate(parts)


# -- candidates --------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A model to try: what it is, how to train it, and (networks) how to estimate its cost first."""

    name: str
    family: str  # one of FAMILIES
    kind: str  # a member kind (tessera.ensemble.KINDS)
    inputs: list[str]
    fit: Callable[[], tuple[Member, dict[str, np.ndarray]]]  # the member and its scores per split
    estimate: Callable[[], float] | None = None


def candidates(data: Data, model: ModelConfig, train: TrainConfig, exclude: Any = ()) -> list[Candidate]:
    """Every model to try, cheapest first, less the excluded families."""
    return [c for c in all_candidates(data, model, train) if c.family not in exclude]


def all_candidates(data: Data, model: ModelConfig, train: TrainConfig) -> list[Candidate]:
    out: list[Candidate] = []
    inputs = list(data.pipeline.preprocessors)
    tabular_inputs = [n for n, p in data.pipeline.preprocessors.items() if p.modality in ("numeric", "categorical")]
    if data.featurizer is not None:
        f = data.featurizer
        blocks = {b.input: b for b in f.blocks}
        every = f.tabular_columns + [c for b in f.blocks for c in b.columns]
        gbm_columns = f.tabular_columns + [c for b in f.blocks for c in b.columns[:GBM_COMPONENTS]]
        featured = tabular_inputs + list(blocks)
        out.append(sklearn_candidate(data, "gbm", featured, gbm_columns, "gbm"))
        if f.tabular_columns and blocks:
            out.append(sklearn_candidate(data, "gbm tabular", tabular_inputs, f.tabular_columns, "gbm"))
        out.append(sklearn_candidate(data, "linear", featured, every, "linear"))
        if len(featured) > 1:
            for name, block in blocks.items():
                out.append(sklearn_candidate(data, f"linear {name}", [name], block.columns, "linear"))
        if blocks:
            for fusion in ("concat", "late"):
                out.append(features_network(data, f"features {fusion}", fusion, model, train))
    if len(inputs) > 1:
        for name in inputs:
            out.append(raw_network(data, f"{name} only", "unimodal networks", [name], model_for_inputs(model, [name]), train))
    for fusion in dict.fromkeys([model.fusion, "late"]):
        label = f"fusion {fusion}" if len(inputs) > 1 else f"network {fusion}"
        out.append(raw_network(data, label, "fusion networks", inputs, model.replace(fusion=fusion), train))
    return out


def raw_network(data: Data, name: str, family: str, keep: list[str], model: ModelConfig, train: TrainConfig) -> Candidate:
    """A Tessera network on the table's own inputs, trained as ``Predictor.fit`` would on the shared decoded copy."""
    pipeline = data.pipeline.restrict(keep)

    def fit() -> tuple[Member, dict[str, np.ndarray]]:
        from tessera.predictor import Predictor

        predictor = Predictor(model=model, train=train).fit_prepared(pipeline, data.prepared.splits)
        return network_scores(data, Member(name, "network", keep, 0.0, predictor=predictor), data.prepared.splits)

    return Candidate(name, family, "network", keep, fit, lambda: estimate_network(pipeline, model, train, data.prepared.splits))


def features_network(data: Data, name: str, fusion: str, model: ModelConfig, train: TrainConfig) -> Candidate:
    """A network whose inputs are the tabular inputs and each block's components (a numeric input per block)."""
    f = data.featurizer
    base = data.pipeline.schema
    inputs = {n: base.inputs[n] for n, p in data.pipeline.preprocessors.items() if p.modality in ("numeric", "categorical")}
    inputs.update({f"{b.input}_features": InputSpec("numeric", b.columns) for b in f.blocks})
    schema = Schema(inputs, base.target, base.task, split=SPLIT_COLUMN)
    block_columns = [c for b in f.blocks for c in b.columns]
    used = np.concatenate(list(data.rows.values()))  # split by split, so each split keeps data.rows' order
    frame = pd.concat([data.table.frame.loc[used], data.features.loc[used, block_columns]], axis=1)
    frame[SPLIT_COLUMN] = np.repeat(list(data.rows), [len(r) for r in data.rows.values()])
    cfg = ModelConfig(fusion=fusion, dim=model.dim, head_dropout=model.head_dropout)
    uses = [n for n in data.pipeline.preprocessors if n in inputs or f"{n}_features" in inputs]
    state: dict[str, Any] = {}

    def prepared() -> tuple[Pipeline, dict[str, Any]]:
        if not state:  # the shared rows and split, prepared as any table is (nothing is skipped: they decoded once)
            done = prepare(Table(frame, data.table.base_dir, data.table.source), schema,
                           config=train.replace(cache=True, max_train_rows=None), skip_report=None)
            state["pipeline"], state["splits"] = done.pipeline, done.splits
        return state["pipeline"], state["splits"]

    def fit() -> tuple[Member, dict[str, np.ndarray]]:
        from tessera.predictor import Predictor

        pipeline, splits = prepared()
        predictor = Predictor(model=cfg, train=train).fit_prepared(pipeline, splits)
        return network_scores(data, Member(name, "features network", uses, 0.0, predictor=predictor), splits)

    def estimate() -> float:
        pipeline, splits = prepared()
        return estimate_network(pipeline, cfg, train, splits)

    return Candidate(name, "features networks", "features network", uses, fit, estimate)


def network_scores(data: Data, member: Member, splits: dict[str, Any]) -> tuple[Member, dict[str, np.ndarray]]:
    from tessera.evaluate.metrics import predict_split

    scored = [s for s in ("val", "test") if s in splits]
    return member, {s: predict_split(member.predictor.model, splits[s], data.task)[1] for s in scored}


def estimate_network(pipeline: Pipeline, model: ModelConfig, train: TrainConfig, splits: dict[str, Any]) -> float:
    """Seconds a network would take: timed training steps of a throwaway copy, times the steps of every epoch
    (and a quarter more for validation). Early stopping only makes it shorter."""
    torch.manual_seed(train.seed)
    net = build_model(pipeline, model)
    net.train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad] or [torch.zeros(1, requires_grad=True)])
    times = []
    for i, batch in enumerate(splits["train"].batches(train.batch_size, shuffle=True, seed=train.seed)):
        start = time.perf_counter()
        loss = pipeline.target.loss(net(batch.inputs).logits, batch.target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        if i + 1 >= PROBE_STEPS:
            break
    per_step = float(np.mean(times[1:] if len(times) > 1 else times))
    steps = math.ceil(len(splits["train"]) / train.batch_size) * train.epochs
    return 1.25 * per_step * steps


def sklearn_candidate(data: Data, name: str, inputs: list[str], columns: list[str], family: str) -> Candidate:
    """Gradient boosting or a linear model on feature columns (fitted on train, tuned/stopped on val)."""
    task = data.task
    classifier = task.tabular_learner == "classifier"

    def fit() -> tuple[Member, dict[str, np.ndarray]]:
        x = {s: data.features.loc[r, columns] for s, r in data.rows.items()}
        categorical = [c in data.featurizer.categories for c in columns]
        if family == "gbm":
            estimator = fit_gbm(x["train"], data.y["train"], x["val"], data.y["val"], categorical, classifier)
        else:
            estimator = fit_linear(x, data.y, categorical, classifier, task)
        member = Member(name, "sklearn", inputs, 0.0, estimator=estimator, columns=list(columns))
        return member, {s: _sk_scores(estimator, x[s], classifier) for s in ("val", "test") if s in x}

    return Candidate(name, family, "sklearn", inputs, fit)


def _sk_scores(estimator: Any, x: pd.DataFrame, classifier: bool) -> np.ndarray:
    return np.asarray(estimator.predict_proba(x) if classifier else estimator.predict(x), np.float64)


def fit_gbm(x: pd.DataFrame, y: np.ndarray, x_val: pd.DataFrame, y_val: np.ndarray, categorical: list[bool], classifier: bool) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classifier else HistGradientBoostingRegressor
    gbm = cls(learning_rate=0.1, max_iter=500, max_leaf_nodes=31, min_samples_leaf=20, l2_regularization=1.0,
              categorical_features=np.asarray(categorical) if any(categorical) else None,
              early_stopping=True, n_iter_no_change=20, random_state=0)
    return gbm.fit(x, y, X_val=x_val, y_val=y_val)


def fit_linear(x: dict[str, pd.DataFrame], y: dict[str, np.ndarray], categorical: list[bool], classifier: bool, task: Any) -> Any:
    """Logistic (or ridge) regression on standardised numbers and one-hot categories, its strength chosen on val."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = list(x["train"].columns)
    numbers = [c for c, cat in zip(columns, categorical) if not cat]
    codes = [c for c, cat in zip(columns, categorical) if cat]
    best, best_score = None, None
    for strength in LINEAR_STRENGTHS:
        prepare = ColumnTransformer(
            [("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers)]
            + ([("codes", OneHotEncoder(handle_unknown="ignore"), codes)] if codes else [])
        )
        head = LogisticRegression(C=strength, max_iter=1000) if classifier else Ridge(alpha=1.0 / strength)
        model = make_pipeline(prepare, head).fit(x["train"], y["train"])
        score = task.main_score(y["val"], _sk_scores(model, x["val"], classifier))
        if best_score is None or task.main_metric.better(score, best_score):
            best, best_score = model, score
    return best


# -- the leaderboard -----------------------------------------------------------------------------
def make_leaderboard(data: Data, trained: list[Trained], ensemble: dict[str, np.ndarray], notes: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trained model (the ensemble first, then by weight), then the models left out and why."""
    task, main = data.task, data.task.main_metric.metric

    def row(model: str, kind: str, inputs: list[str], scores: dict[str, np.ndarray], seconds: float, weight: float) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "kind": kind, "inputs": ", ".join(inputs)}
        out.update({f"{s}_{main}": task.main_score(data.y[s], scores[s]) for s in ("val", "test") if s in scores})
        return {**out, "fit_seconds": seconds, "weight": weight, "note": ""}

    rows = [row("ensemble", "ensemble", list(data.pipeline.preprocessors), ensemble, sum(r.seconds for r in trained), 1.0)]
    for r in sorted(trained, key=lambda r: -r.member.weight):
        rows.append(row(r.member.name, r.member.kind, r.member.inputs, r.scores, r.seconds, r.member.weight))
    rows += [{**n, "weight": 0.0} for n in notes]
    return pd.DataFrame(rows)
