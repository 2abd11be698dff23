"""`compare`'s fairness: each arm's training summarised, and the arms that were not compared at the same point flagged."""

from __future__ import annotations

from tessera.tasks.base import Goal
from tessera.train import TrainResult
from tessera.workflows.compare import training_columns, training_flags

ACCURACY = Goal("accuracy")


def run(scores: list[float], stopped_early: bool = False, output: str | None = None) -> TrainResult:
    history = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_accuracy": s} for i, s in enumerate(scores)]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i)) + 1
    chosen = None if output is None else {"chosen": output}
    return TrainResult(history=history, best_epoch=best, stopped_early=stopped_early, output=chosen)


def test_training_columns_say_where_each_arm_stood():
    rising = training_columns(run([0.3, 0.5, 0.6]), ACCURACY)
    assert rising["still_improving"] and rising["epochs"] == 3 and rising["best_epoch"] == 3 and rising["output"] == "-"
    assert not training_columns(run([0.3, 0.6, 0.6]), ACCURACY)["still_improving"]  # flat at the end
    assert not training_columns(run([0.3, 0.5, 0.6], stopped_early=True), ACCURACY)["still_improving"]
    no_val = TrainResult(history=[{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}], best_epoch=2)
    assert training_columns(no_val, ACCURACY)["still_improving"]  # the training loss is what there is


def test_flags_name_the_arm_that_stopped_much_earlier_and_the_one_still_improving():
    rows = [
        {"model": "audio only", **training_columns(run([0.5, 0.5, 0.5, 0.5], stopped_early=True), ACCURACY)},
        {"model": "image only", **training_columns(run([0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]), ACCURACY)},
        {"model": "fusion", **training_columns(run([0.2, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9], output="audio only"), ACCURACY)},
    ]
    flags = training_flags(rows, budget=10)
    assert len(flags) == 3, flags
    assert flags[0].startswith("audio only stopped early at epoch 4 of 10, much earlier than image only (10 epochs)")
    assert flags[1].startswith("fusion was still improving at its last epoch (val_accuracy 0.2000 at epoch 1, 0.9000 at epoch 10)")
    assert flags[2] == "fusion answers with audio only: on validation its fused output alone did worse"
    rows[0] = {"model": "audio only", **training_columns(run([0.5] * 6, stopped_early=True), ACCURACY)}
    assert not any(f.startswith("audio only") for f in training_flags(rows, budget=10))  # 6 of 10: not much earlier
