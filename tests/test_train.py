"""Training extras: auxiliary heads, OGM-GE, on-disk best checkpoints, early stopping, the fused output's fallback."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tessera.errors import SchemaError, TesseraError
from tessera.model import build_model
from tessera.predictor import Predictor
from tessera.prepare import prepare
from tessera.tasks import Multiclass
from tessera.tasks.base import Goal
from tessera.train import StoppingRule, TrainConfig, balanced_aux_loss, ogm_coefficients

CROSS_ENTROPY = Multiclass(["label"]).loss


def numeric_only(schema: dict) -> dict:
    return {**schema, "inputs": {"numeric": schema["inputs"]["numeric"]}}


# -- auxiliary heads ------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_aux_heads_give_per_input_logits_zero_where_absent(tiny_table, tiny_schema, fusion):
    pred = Predictor(model={"fusion": fusion, "dim": 16, "aux_heads": True}, train={"batch_size": 8})
    data = prepare(tiny_table, tiny_schema, None, pred.train_config)
    pipeline, sources = data.pipeline, data.splits
    model = build_model(pipeline, pred.model_config).eval()
    batch = next(iter(sources["train"].batches(8)))
    batch.inputs["image"].present[:3] = False  # encoders zero absent rows; their logits must be zero too
    out = model(batch.inputs)
    assert out.logits.shape == (8, 4)
    assert set(out.unimodal_logits) == set(tiny_schema["inputs"])
    assert all(v.shape == (8, 4) for v in out.unimodal_logits.values())
    assert not out.unimodal_logits["image"][:3].any() and out.unimodal_logits["image"][3:].any()
    assert not out.present["image"][:3].any() and out.present["image"][3:].all()
    if fusion == "late":  # late fusion's own per-input heads are reused, none are added
        assert len(model.aux_heads) == 0
        features, masks, present = model.encode(batch.inputs)
        torch.testing.assert_close(out.unimodal_logits["audio"], model.fusion(features, masks, present).unimodal_logits["audio"])
    else:
        assert set(model.aux_heads) == set(tiny_schema["inputs"])


def test_aux_loss_ignores_absent_rows_and_weights_inputs_equally():
    g = torch.Generator().manual_seed(0)
    logits = {"a": torch.randn(4, 3, generator=g, requires_grad=True), "b": torch.randn(4, 3, generator=g), "c": torch.randn(4, 3)}
    present = {
        "a": torch.tensor([True, True, False, True]),
        "b": torch.tensor([False, True, False, False]),
        "c": torch.zeros(4, dtype=torch.bool),  # absent from the whole batch: left out of the mean
    }
    y = torch.tensor([0, 2, 1, 1])
    got = balanced_aux_loss(CROSS_ENTROPY, logits, present, y)
    # By hand: a over its 3 present rows, b over its single row, then the mean of the two.
    ce_a = sum(-torch.log_softmax(logits["a"][i], -1)[y[i]] for i in (0, 1, 3)) / 3
    ce_b = -torch.log_softmax(logits["b"][1], -1)[y[1]]
    torch.testing.assert_close(got, (ce_a + ce_b) / 2)
    # b's one row weighs as much as a's three (balanced), and absent rows teach nothing.
    got.backward()
    assert not logits["a"].grad[2].any() and logits["a"].grad[[0, 1, 3]].any()
    changed = {k: v.detach().clone() for k, v in logits.items()}
    changed["a"][2] = 100.0
    changed["b"][[0, 2, 3]] = -100.0
    torch.testing.assert_close(balanced_aux_loss(CROSS_ENTROPY, changed, present, y), got.detach())
    assert balanced_aux_loss(CROSS_ENTROPY, logits, {k: torch.zeros(4, dtype=torch.bool) for k in logits}, y) is None


# -- OGM-GE ---------------------------------------------------------------------------------
def test_ogm_coefficients_by_hand():
    y = torch.tensor([0, 1, 2, 0])
    sure = F.one_hot(y, 3).float() * 50.0  # softmax of the true class ~ 1
    unsure = torch.zeros(4, 3)  # uniform: 1/3
    here = torch.ones(4, dtype=torch.bool)
    k = ogm_coefficients({"strong": sure, "weak": unsure}, {"strong": here, "weak": here}, y, alpha=0.5)
    assert k["weak"] == 1.0
    assert k["strong"] == pytest.approx(1 - math.tanh(0.5 * (1.0 / (1 / 3) - 1)), abs=1e-6)
    # Absent rows are not scored: with only its row 0 (confidently wrong) counted, "strong" is the weak one.
    wrong = torch.roll(sure, 1, dims=1)
    only_first = torch.tensor([True, False, False, False])
    k = ogm_coefficients({"strong": wrong, "weak": unsure}, {"strong": only_first, "weak": here}, y, alpha=0.5)
    assert k["strong"] == 1.0 and k["weak"] < 1.0


def dominant_table(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """`strong` names the class outright; `weak` is noise."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 4
    return pd.DataFrame({"strong": [f"c{v}" for v in label], "weak": rng.normal(size=n), "label": label})


DOMINANT_SCHEMA = {
    "target": "label",
    "task": "multiclass",
    "inputs": {"strong": {"modality": "categorical", "columns": ["strong"]}, "weak": {"modality": "numeric", "columns": ["weak"]}},
}


def test_ogm_slows_the_dominant_input_only():
    p = Predictor(
        model={"dim": 16, "aux_heads": True},
        train={"epochs": 6, "batch_size": 32, "lr": 3e-3, "patience": 0, "gradient_modulation": "ogm_ge"},
    ).fit(dominant_table(), DOMINANT_SCHEMA)
    last = p.result.history[-1]
    assert last["ogm_coeff_strong"] < 0.9, last
    assert last["ogm_coeff_weak"] == 1.0, last


def test_ogm_refuses_models_and_tasks_it_cannot_modulate(tiny_table, tiny_schema):
    with pytest.raises(SchemaError, match="aux_heads"):
        Predictor(model={"dim": 8}, train={"epochs": 1, "gradient_modulation": "ogm_ge"}).fit(tiny_table, numeric_only(tiny_schema))
    frame = dominant_table().assign(label=lambda d: d["label"].astype(float) + 0.5)
    regression = {**DOMINANT_SCHEMA, "task": "regression"}
    with pytest.raises(SchemaError, match="multiclass"):
        Predictor(model={"dim": 8, "aux_heads": True}, train={"epochs": 1, "gradient_modulation": "ogm_ge"}).fit(frame, regression)
    with pytest.raises(SchemaError, match="gradient_modulation"):
        TrainConfig.from_dict({"gradient_modulation": "ogm"})


def test_aux_heads_and_ogm_still_learn_the_fused_label(tiny_table, tiny_schema):
    p = Predictor(
        model={"dim": 32, "aux_heads": True},
        train={"epochs": 12, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 1, "gradient_modulation": "ogm_ge"},
    )
    data = prepare(tiny_table, tiny_schema, None, p.train_config)
    pipeline, sources = data.pipeline, data.splits
    p.fit_prepared(pipeline, {"train": sources["train"]})  # best by train loss: 5 val rows saturate at once
    assert p.evaluate(tiny_table)["accuracy"] > 0.9  # label needs image and audio together
    assert p.result.history[-1]["train_aux_loss"] < p.result.history[0]["train_aux_loss"]


def test_same_seed_same_history_with_aux_heads(tiny_table, tiny_schema):
    def run() -> list[dict]:
        p = Predictor(
            model={"dim": 16, "aux_heads": True, "modality_dropout": 0.3},
            train={"epochs": 2, "batch_size": 16, "seed": 3, "gradient_modulation": "ogm_ge"},
        ).fit(tiny_table, tiny_schema)
        return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in p.result.history]

    first = run()
    assert "train_aux_loss" in first[0] and "ogm_coeff_image" in first[0]
    assert first == run()


# -- on-disk best checkpoint ----------------------------------------------------------------
class Crash(Exception):
    pass


class CrashingSource:
    """A training split that dies when epoch ``crash_epoch`` asks for its batches."""

    def __init__(self, source, crash_epoch: int) -> None:
        self.source, self.crash_epoch, self.epoch = source, crash_epoch, 0

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        self.epoch += 1
        if self.epoch == self.crash_epoch:
            raise Crash(f"killed in epoch {self.epoch}")
        return self.source.batches(batch_size, shuffle=shuffle, seed=seed)


def test_crash_mid_training_leaves_the_best_model_loadable(tiny_table, tiny_schema, tmp_path):
    ckpt = tmp_path / "ckpt"
    p = Predictor(model={"dim": 16}, train={"epochs": 6, "batch_size": 16, "lr": 3e-3, "checkpoint_dir": str(ckpt)})
    data = prepare(tiny_table, tiny_schema, None, p.train_config)
    pipeline, sources = data.pipeline, data.splits
    with pytest.raises(Crash):
        # No val split: every epoch whose train loss drops is an improvement, so epochs 1 and 2 are saved.
        p.fit_prepared(pipeline, {"train": CrashingSource(sources["train"], crash_epoch=3)})
    loaded = Predictor.load(ckpt)
    assert [r["epoch"] for r in loaded.result.history] == [1, 2]
    assert loaded.train_config.checkpoint_dir == str(ckpt)
    for name, value in p.model.state_dict().items():  # the crash came before epoch 3's first step
        torch.testing.assert_close(loaded.model.state_dict()[name], value.cpu())
    assert len(loaded.predict(tiny_table)) == 48
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".ckpt")]  # no half-written folders


def test_finished_run_leaves_the_final_model_in_the_checkpoint(tiny_table, tiny_schema, tmp_path):
    ckpt = tmp_path / "ckpt"
    p = Predictor(model={"dim": 8}, train={"epochs": 3, "batch_size": 16, "patience": 0, "checkpoint_dir": str(ckpt)})
    p.fit(tiny_table, numeric_only(tiny_schema))
    loaded = Predictor.load(ckpt)
    assert loaded.result.history == p.result.history
    pd.testing.assert_frame_equal(loaded.predict_proba(tiny_table), p.predict_proba(tiny_table))


# -- resume ---------------------------------------------------------------------------------
def test_resume_from_an_epoch_end_state_continues_the_same_run(tiny_table, tiny_schema):
    """The state handed to ``on_epoch_end`` is all a restarted worker needs (the Ray runner's resume)."""
    from tessera.train import train

    p = Predictor(model={"dim": 16, "modality_dropout": 0.3}, train={"epochs": 4, "batch_size": 16, "seed": 1, "patience": 0})
    data = prepare(tiny_table, numeric_only(tiny_schema), None, p.train_config)
    pipeline, sources = data.pipeline, data.splits
    cfg = p.train_config

    def fresh():
        torch.manual_seed(cfg.seed)
        return build_model(pipeline, p.model_config)

    states: list[dict] = []
    full = train(fresh(), sources["train"], sources["val"], pipeline.target, cfg, on_epoch_end=lambda s: states.append(
        {k: (copy.deepcopy(v)) for k, v in s.items()}))
    resumed = train(fresh(), sources["train"], sources["val"], pipeline.target, cfg, resume=states[1])  # "killed" after epoch 2
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]  # noqa: E731
    assert [s["epoch"] for s in states] == [1, 2, 3, 4]
    assert strip(resumed.history) == strip(full.history) and resumed.best_epoch == full.best_epoch


def test_a_fit_killed_after_epoch_2_resumes_to_the_uninterrupted_runs_weights(tiny_table, tiny_schema, tmp_path):
    """Bit-identical on one thread with cached data: the saved state is the whole training state
    (weights, optimiser, schedule, torch and numpy RNG, history, best weights, patience count)."""
    schema = {**tiny_schema, "inputs": {k: tiny_schema["inputs"][k] for k in ("numeric", "caption")}}
    train_cfg = {"epochs": 5, "batch_size": 16, "lr": 3e-3, "seed": 2, "patience": 3, "threads": 1}
    model_cfg = {"dim": 16, "modality_dropout": 0.3}
    data = prepare(tiny_table, schema, None, TrainConfig.from_dict(train_cfg))
    pipeline, sources = data.pipeline, data.splits

    full = Predictor(model=model_cfg, train={**train_cfg, "checkpoint_dir": str(tmp_path / "full")}).fit_prepared(pipeline, sources)
    assert not (tmp_path / "full" / "train_state.pt").exists()  # a finished run leaves no state behind

    ckpt = tmp_path / "killed"
    killed = Predictor(model=model_cfg, train={**train_cfg, "checkpoint_dir": str(ckpt)})
    with pytest.raises(Crash):
        killed.fit_prepared(pipeline, {**sources, "train": CrashingSource(sources["train"], crash_epoch=3)})
    state = torch.load(ckpt / "train_state.pt", weights_only=False)
    assert state["train"]["epoch"] == 2 and Predictor.load(ckpt).model is not None

    resumed = Predictor(model=model_cfg, train={**train_cfg, "checkpoint_dir": str(ckpt)}).fit_prepared(pipeline, sources, resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]  # noqa: E731
    assert strip(resumed.result.history) == strip(full.result.history) and len(full.result.history) == 5
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert resumed.metrics == full.metrics
    assert not (ckpt / "train_state.pt").exists()


def test_resuming_refuses_a_finished_run_and_changed_settings(tiny_table, tiny_schema, tmp_path):
    schema = numeric_only(tiny_schema)
    train_cfg = {"epochs": 3, "batch_size": 16, "checkpoint_dir": str(tmp_path / "ckpt")}
    data = prepare(tiny_table, schema, None, TrainConfig.from_dict(train_cfg))
    with pytest.raises(Crash):
        Predictor(model={"dim": 8}, train=train_cfg).fit_prepared(
            data.pipeline, {**data.splits, "train": CrashingSource(data.splits["train"], crash_epoch=2)}
        )
    with pytest.raises(SchemaError, match=r"differ from the interrupted run's: train\.lr"):
        Predictor(model={"dim": 8}, train={**train_cfg, "lr": 0.5}).fit_prepared(data.pipeline, data.splits, resume=True)
    Predictor(model={"dim": 8}, train={**train_cfg, "threads": 1}).fit_prepared(data.pipeline, data.splits, resume=True)
    with pytest.raises(TesseraError, match="the run completed"):
        Predictor(model={"dim": 8}, train=train_cfg).fit_prepared(data.pipeline, data.splits, resume=True)
    with pytest.raises(TesseraError, match="resuming needs train.checkpoint_dir"):
        Predictor(model={"dim": 8}, train={"epochs": 3}).fit_prepared(data.pipeline, data.splits, resume=True)


# -- early stopping -------------------------------------------------------------------------
def test_stopping_rule_defaults_scale_with_the_budget():
    rule = StoppingRule.for_budget(TrainConfig(epochs=15), Goal("accuracy"))
    assert (rule.patience, rule.min_epochs) == (4, 8)
    rule = StoppingRule.for_budget(TrainConfig(epochs=3), Goal("accuracy"))
    assert (rule.patience, rule.min_epochs) == (3, 2)
    rule = StoppingRule.for_budget(TrainConfig(epochs=30, patience=0, min_epochs=2), Goal("accuracy"))
    assert (rule.patience, rule.min_epochs) == (0, 2) and not rule.should_stop(30)


def test_stopping_rule_counts_an_input_still_learning_as_progress():
    rule = StoppingRule(Goal("accuracy"), patience=2, min_epochs=1)
    assert rule.update(0.5, {"image": 0.4, "audio": 0.2})
    assert rule.update(0.6, {"image": 0.5, "audio": 0.2})
    assert not rule.update(0.6, {"image": 0.5, "audio": 0.2}) and rule.stale == 0  # audio has not started: waiting
    assert not rule.update(0.6, {"image": 0.5, "audio": 0.3}) and rule.stale == 0  # fused flat, audio learning: progress
    assert not rule.update(0.59, {"image": 0.5, "audio": 0.3}) and not rule.should_stop(5)
    assert not rule.update(0.6, {"image": 0.49, "audio": 0.3}) and rule.should_stop(6)
    loss = StoppingRule(Goal("loss", higher_is_better=False), patience=1, min_epochs=1)
    assert loss.update(2.0) and loss.update(1.5) and not loss.update(1.6) and loss.should_stop(3)


class ScriptedScore(Multiclass):
    """A task whose validation accuracy is read from a script: flat for six epochs, then rising."""

    def __init__(self, task: Multiclass, script: list[float]) -> None:
        super().__init__(task.columns)
        self.classes, self.script, self.calls = task.classes, list(script), 0

    def quick_score(self, outputs, target):
        score = {**super().quick_score(outputs, target), "accuracy": self.script[self.calls]}
        self.calls += 1
        return score


def test_a_score_that_rises_only_after_a_flat_start_is_kept(tiny_table, tiny_schema):
    """The old rule (patience 3 from the first epoch) stopped this run at epoch 4 and kept epoch 1."""
    from tessera.train import train

    script = [0.25] * 6 + [0.3, 0.5, 0.7, 0.65, 0.6, 0.6]
    p = Predictor(model={"dim": 8}, train={"epochs": 12, "batch_size": 16, "seed": 0})
    data = prepare(tiny_table, numeric_only(tiny_schema), None, p.train_config)
    pipeline, sources = data.pipeline, data.splits
    torch.manual_seed(0)
    model = build_model(pipeline, p.model_config)
    kept = {}
    result = train(model, sources["train"], sources["val"], ScriptedScore(pipeline.target, script), p.train_config,
                   on_improve=lambda m, r: kept.update({r.best_epoch: copy.deepcopy(m.state_dict())}))
    assert [r["val_accuracy"] for r in result.history] == script  # the whole budget: epochs 10-12 are within patience
    assert result.best_epoch == 9 and result.best_metric == 0.7 and not result.stopped_early
    for name, value in model.state_dict().items():  # restore-best: the weights of epoch 9, not the last ones
        torch.testing.assert_close(value, kept[9][name])


def test_patience_ends_a_run_that_stopped_improving_after_the_minimum(tiny_table, tiny_schema):
    from tessera.train import train

    script = [0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    p = Predictor(model={"dim": 8}, train={"epochs": 10, "batch_size": 16, "patience": 2, "min_epochs": 6})
    data = prepare(tiny_table, numeric_only(tiny_schema), None, p.train_config)
    model = build_model(data.pipeline, p.model_config)
    result = train(model, data.splits["train"], data.splits["val"], ScriptedScore(data.pipeline.target, script), p.train_config)
    assert len(result.history) == 6 and result.stopped_early and result.best_epoch == 2


# -- never worse than the best single input -------------------------------------------------
def test_choose_output_falls_back_to_the_input_that_is_better_alone():
    from tessera.train import SplitOutputs, choose_output, describe_output

    y = torch.arange(8) % 4
    right = F.one_hot(y, 4).float() * 5
    wrong = torch.roll(right, 1, dims=1)
    fused = torch.where(torch.arange(8).unsqueeze(1) < 4, right, wrong)  # half right
    here = torch.ones(8, dtype=torch.bool)
    outputs = SplitOutputs(fused, {"a": right, "b": wrong}, {"a": here, "b": here}, y)
    chosen = choose_output(Multiclass(["label"]), outputs, ["a", "b"])
    assert chosen["chosen"] == "a only" and chosen["weights"] == {"fused": 0.0, "a": 1.0, "b": 0.0}
    assert chosen["val_scores"]["fused"] == 0.5 and chosen["val_scores"]["a only"] == 1.0
    assert describe_output(chosen).startswith("answers with a only instead of its fused output alone")
    tie = SplitOutputs(right, {"a": right, "b": wrong}, {"a": here, "b": here}, y)
    assert choose_output(Multiclass(["label"]), tie, ["a", "b"])["chosen"] == "fused"  # ties keep the fused output


def test_blend_renormalises_over_the_inputs_a_row_has():
    from tessera.model import blend_logits

    fused, a = torch.full((3, 2), 1.0), torch.full((3, 2), 3.0)
    present = torch.tensor([True, False, True])
    a = torch.where(present.unsqueeze(1), a, torch.zeros(()))  # absent rows are zero, as the model returns them
    half = blend_logits(fused, [a], [present], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(half, torch.tensor([[2.0, 2.0], [1.0, 1.0], [2.0, 2.0]]))
    alone = blend_logits(fused, [a], [present], torch.tensor([0.0, 1.0]))  # a row without a answers fused
    torch.testing.assert_close(alone, torch.tensor([[3.0, 3.0], [1.0, 1.0], [3.0, 3.0]]))


def noisy_input_table(n: int = 200, seed: int = 1) -> pd.DataFrame:
    """Two classes: `s0`, `s1` are weak evidence (one standard deviation apart); the 64 `noise_*` columns are pure noise."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    frame = pd.DataFrame({f"noise_{i}": rng.normal(size=n) for i in range(64)})
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    return frame.assign(s0=rng.normal(size=n) + label, s1=rng.normal(size=n) + label, label=label, split=split)


NOISY_SCHEMA = {
    "target": "label",
    "task": "multiclass",
    "split": "split",
    "inputs": {
        "signal": {"modality": "numeric", "columns": ["s0", "s1"]},
        "noise": {"modality": "numeric", "columns": [f"noise_{i}" for i in range(64)]},
    },
}


def test_fused_model_is_no_worse_than_its_best_input_when_one_input_is_noise(tmp_path, caplog):
    table = noisy_input_table()
    p = Predictor(model={"dim": 128}, train={"epochs": 15, "batch_size": 16, "lr": 3e-3, "seed": 1})
    p.fit(table, NOISY_SCHEMA)
    chosen = p.result.output
    assert chosen is not None and chosen["metric"] == "accuracy"
    scores = chosen["val_scores"]
    best_input = max(scores["signal only"], scores["noise only"])
    # The setup (seeded): the fused output alone overfits the noise and is worse than the signal alone.
    assert scores["fused"] < best_input and chosen["chosen"] != "fused"
    assert "fusion fallback" in caplog.text  # said, not silent
    val = p.evaluate(table[table["split"] == "val"])["accuracy"]
    assert val == pytest.approx(scores[chosen["chosen"]], abs=1e-6)  # quick scores are float32 means
    assert val >= best_input - 1e-6
    assert p.result.history[-1]["val_accuracy_signal"] > p.result.history[-1]["val_accuracy_noise"]
    # The choice travels with the model: the same answers after a reload, and the record in tessera.json.
    loaded = Predictor.load(p.save(tmp_path / "m"))
    assert loaded.result.output == chosen
    pd.testing.assert_frame_equal(loaded.predict_proba(table), p.predict_proba(table))
    unblended = Predictor(model={"dim": 128}, train={"epochs": 15, "batch_size": 16, "lr": 3e-3, "seed": 1, "fusion_fallback": False})
    assert unblended.fit(table, NOISY_SCHEMA).result.output is None
    assert unblended.evaluate(table[table["split"] == "val"])["accuracy"] == pytest.approx(scores["fused"], abs=1e-6)
