"""Model worker processes: same answers as in-process, errors come back as themselves, a killed worker fails only its batch."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from tests.serve.test_app import assert_problem, image_bytes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def workers(loaded):
    from tessera.serve.workers import ModelCalls, WorkerProcesses

    pool = WorkerProcesses(ModelCalls(loaded["predictor"], loaded["searcher"].embedder), 2, torch_threads=1)
    yield pool
    pool.close()


def test_worker_processes_answer_as_the_server_process_does(built, loaded, workers) -> None:
    from tessera.serve.workers import ModelCalls

    here = ModelCalls(loaded["predictor"], loaded["searcher"].embedder)
    items = [("caption", "a red square"), ("caption", "a blue circle"), ("image", image_bytes(built, 2))]
    for got, want in zip(workers.call("embed", items), here("embed", items)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    rows = [{"caption": "a blue square", "price": 0.5}, {"image": image_bytes(built, 1)}]
    got, want = workers.call("predict", rows), here("predict", rows)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want):
        assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-6)


def test_a_bad_value_comes_back_as_its_own_error(built, workers) -> None:
    from tessera.errors import DataError

    with pytest.raises(DataError, match="image"):
        workers.call("embed", [("image", image_bytes(built)[:60])])  # a PNG header, then nothing
    assert len(workers.call("embed", [("caption", "still fine")])) == 1


def test_a_killed_worker_fails_only_its_batch_and_is_restarted(workers) -> None:
    from tessera.serve.workers import WorkerCrashed

    before = workers.pids()
    os.kill(before[0], signal.SIGKILL)
    deadline = time.time() + 10
    while workers.alive and time.time() < deadline:
        time.sleep(0.05)
    assert not workers.alive  # readiness sees the dead worker
    outcomes = []
    for _ in range(2):  # the idle queue may hand out the live worker first
        try:
            outcomes.append(len(workers.call("embed", [("caption", "after the crash")])))
        except WorkerCrashed as e:
            outcomes.append(str(e))
    assert any(isinstance(o, str) and "restarted" in o for o in outcomes), outcomes
    assert workers.alive and workers.pids()[0] != before[0] and workers.pids()[1] == before[1]
    assert len(workers.call("embed", [("caption", "after the restart")])) == 1


def test_the_app_with_worker_processes_serves_and_answers_503_for_a_crashed_batch(built, make_client) -> None:
    client, headers = make_client(model_processes=1, torch_threads=1)
    assert client.get("/readyz").status_code == 200
    r = client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
    assert r.status_code == 200, r.text
    runner = client.app.state.tessera.models.runner
    os.kill(runner.pids()[0], signal.SIGKILL)
    deadline = time.time() + 10
    while runner.alive and time.time() < deadline:
        time.sleep(0.05)
    assert client.get("/readyz").status_code == 503
    body = assert_problem(client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers), 503, "restarted")
    assert body["type"].endswith("/model_worker_restarted")
    assert client.get("/readyz").status_code == 200
    again = client.post("/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers)
    assert again.status_code == 200 and again.json()["vector"] == r.json()["vector"]
    files = {"image": ("x.png", image_bytes(built, 1), "image/png")}
    assert client.post("/v1/predict", files=files, headers=headers).status_code == 200


def test_default_model_processes_follow_the_cores(monkeypatch) -> None:
    from tessera.serve import cli

    for cores, processes, threads in [(1, 0, 1), (2, 2, 1), (8, 4, 2), (64, 4, 16)]:
        monkeypatch.setattr(cli, "available_cores", lambda c=cores: c)
        assert cli.default_model_processes() == processes
        assert cli.default_torch_threads(processes) == threads
