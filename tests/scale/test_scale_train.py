"""Ray Train data-parallel fit: the single-process loss curve, resume after a killed worker, on_error."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from tessera.errors import DataError
from tessera.predictor import Predictor
from tessera.scale.train import fit_ray

# No dropout, no batch normalisation and no text (keeps the model tiny): then
# the only difference between one process and two workers is float summation order, and the
# curves must agree to ~1e-6.
INPUTS = {
    "numeric": {"modality": "numeric", "columns": ["price"]},
    "categorical": {"modality": "categorical", "columns": ["color"]},
}
MODEL = {"dim": 16, "head_dropout": 0.0, "fusion_options": {"dropout": 0.0}}
TRAIN = {"epochs": 4, "batch_size": 16, "num_workers": 0, "patience": 0, "seed": 3}


def schema() -> dict:
    return {"target": "label", "inputs": copy.deepcopy(INPUTS)}


@pytest.fixture
def table(tiny_table):
    frame = pd.read_csv(tiny_table)
    frame = pd.concat([frame] * 5, ignore_index=True)  # 240 rows: 14 steps of 16 per epoch
    noise = np.random.default_rng(0).normal(0, 0.4, len(frame))
    frame["price"] = frame["label"] + noise  # learnable from the numeric input alone
    path = tiny_table.parent / "train.csv"
    frame.to_csv(path, index=False)
    return path


def assert_same_curve(a: Predictor, b: Predictor, epochs: int) -> None:
    assert len(a.result.history) == len(b.result.history) == epochs
    for x, y in zip(a.result.history, b.result.history):
        assert x["epoch"] == y["epoch"]
        assert y["train_loss"] == pytest.approx(x["train_loss"], abs=1e-5)
        assert y["val_loss"] == pytest.approx(x["val_loss"], abs=1e-5)
        assert y["val_accuracy"] == pytest.approx(x["val_accuracy"], abs=1e-9)


def train_worker_pids(ray) -> list[int]:
    import psutil

    raylet = psutil.Process(ray._private.worker._global_node.all_processes["raylet"][0].process.pid)
    pids = []
    for p in raylet.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:
            pass
    return pids


@pytest.mark.slow
def test_two_workers_follow_the_single_process_loss_curve_through_a_killed_worker(ray_cluster, table, tmp_path) -> None:
    """One run shows both: the data-parallel curve is the single-process one, and a worker killed
    after the first checkpoint is replaced and the run resumes there (every epoch once, same numbers)."""
    cfg = {**TRAIN, "epochs": 8}
    storage = tmp_path / "ckpt"
    killed: list[int] = []

    def registered_checkpoints() -> int:
        # A checkpoint counts once Ray Train's controller has registered it (a folder alone may be lost).
        try:
            return len(json.loads((storage / "tessera-fit" / "checkpoint_manager_snapshot.json").read_text())["checkpoint_results"])
        except (OSError, ValueError, KeyError):
            return 0

    done = threading.Event()  # the killer waits for a checkpoint as long as training runs, however slow the machine

    def kill_after_first_checkpoint() -> None:
        while not done.is_set():
            if registered_checkpoints() >= 1:
                pids = train_worker_pids(ray_cluster)
                if pids:
                    os.kill(pids[-1], signal.SIGKILL)
                    killed.append(pids[-1])
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    try:
        ray_ = fit_ray(Predictor(model=MODEL, train=cfg), table, schema(), num_workers=2, storage=storage, max_failures=2)
    finally:
        done.set()
    killer.join()
    assert killed, "training ended before a worker could be killed"
    assert len(ray_.result.resumed_from) == 1 and 1 <= ray_.result.resumed_from[0] < cfg["epochs"]  # resumed, not restarted
    local = Predictor(model=MODEL, train=cfg).fit(table, schema=schema())
    assert_same_curve(local, ray_, cfg["epochs"])
    assert local.result.history[-1]["train_loss"] < local.result.history[0]["train_loss"]  # it learned something
    pd.testing.assert_series_equal(local.predict(table), ray_.predict(table))


@pytest.mark.slow
def test_corrupt_file_raises_with_the_row_or_is_skipped_and_reported(ray_cluster, tiny_table, tmp_path) -> None:
    frame = pd.read_csv(tiny_table)
    (tiny_table.parent / "broken.png").write_bytes(b"not a png")
    frame.loc[5, "image"] = "broken.png"
    frame.to_csv(tiny_table, index=False)
    s = {"target": "label", "inputs": {"image": {"modality": "image", "options": {"size": 16}}, **copy.deepcopy(INPUTS)}}
    model = {"dim": 8}
    with pytest.raises(DataError, match=r"row 5, column 'image', file '.*broken.png'") as info:
        fit_ray(Predictor(model=model, train={**TRAIN, "epochs": 1}), tiny_table, copy.deepcopy(s), storage=tmp_path / "a")
    assert type(info.value) is DataError and "Traceback" not in str(info.value)

    report = tmp_path / "skipped.csv"
    with pytest.warns(UserWarning, match="skipped 1 row"):
        pred = fit_ray(
            Predictor(model=model, train={**TRAIN, "epochs": 1, "on_error": "skip"}), tiny_table, copy.deepcopy(s),
            storage=tmp_path / "b", skip_report=report,
        )
    assert len(pred.result.history) == 1
    skipped = pd.read_csv(report)
    assert skipped["row"].tolist() == [5] and skipped["file"].str.endswith("broken.png").all()
