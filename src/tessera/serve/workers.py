"""Where model calls run: on the batcher's thread, or in worker processes that hold a copy of the models.

In one process the event loop (HTTP parsing, auth, JSON) and the model share one GIL: an
eager-mode transformer holds it between kernels, so while a batch runs, requests queue up
unparsed, and the two never use more than about one core between them. Worker processes
each have their own interpreter; the server process only parses requests and moves
pickled batches (a few KB of text or media in, 32 x 384 floats out) over a pipe.

Each worker runs one batch at a time. A worker that dies mid-batch (killed, out of memory,
a crash in native code) fails only that batch's requests; it is restarted before the next.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import pickle
import queue
import threading
import traceback
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tessera.errors import TesseraError

log = logging.getLogger("tessera.serve")
START_TIMEOUT_S = 300.0  # loading torch and a model in a fresh interpreter; generous for a busy machine


class ModelCalls:
    """The batch functions behind the routes, over the loaded models. Picklable, so a worker can hold a copy."""

    def __init__(self, predictor: Any = None, embedder: Any = None, onnx_text: dict[str, Any] | None = None) -> None:
        self.predictor, self.embedder = predictor, embedder
        self.onnx_text = onnx_text or {}  # input name -> tessera.onnx_text.OnnxText, used instead of the torch path
        if predictor is not None:
            predictor.inference.on_error = "raise"  # a bad row must fail its own request, not vanish
            predictor.inference.num_workers = 0
            self.columns = [c for pre in predictor.pipeline.preprocessors.values() for c in pre.columns]

    def __call__(self, kind: str, items: list) -> list:
        if kind == "predict":
            return self.predict(items)
        if kind == "embed":
            return self.embed(items)
        raise ValueError(f"unknown model call {kind!r}")

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in self.columns})
        return self.predictor.predict_records(frame)  # the task formats each answer

    def embed(self, items: list[tuple[str, Any]]) -> list[np.ndarray]:
        """(input name, value) pairs; values of one input share a model call."""
        out: list[Any] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(items):
            groups.setdefault(name, []).append(i)
        for name, positions in groups.items():
            values = [items[i][1] for i in positions]
            vectors = self.onnx_text[name].embed(values) if name in self.onnx_text else self.embedder.embed(name, values)
            if len(vectors) != len(positions):
                raise RuntimeError("the embedder returned fewer vectors than values")
            for i, v in zip(positions, vectors):
                out[i] = v
        return out


def plain_value(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


class InProcess:
    """Model calls on the calling (batcher) thread: no start-up cost, no copies; tests and small servers."""

    processes = 0

    def __init__(self, calls: ModelCalls) -> None:
        self.calls = calls

    def call(self, kind: str, items: list) -> Sequence[Any]:
        return self.calls(kind, items)

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class WorkerCrashed(RuntimeError):
    """A worker process exited while running a batch (the batch's requests get a 503)."""


class _Worker:
    def __init__(self, ctx: Any, payload: bytes, torch_threads: int | None, index: int) -> None:
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, payload, torch_threads), name=f"tessera-model-{index}", daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.process.kill()
            raise TesseraError(f"model worker {self.index} did not start in {timeout:.0f} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError) as e:
            raise TesseraError(f"model worker {self.index} exited while loading the models (exit code {self.process.exitcode})") from e
        if status != "ready":
            raise TesseraError(f"model worker {self.index} could not load the models:\n{value}")

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class WorkerProcesses:
    """``n`` processes, each with its own copy of the models and ``torch_threads`` threads; a call takes an idle one."""

    def __init__(self, calls: ModelCalls, n: int, torch_threads: int | None = None) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.processes, self.torch_threads = n, torch_threads
        self._ctx = multiprocessing.get_context("spawn")  # fork would copy the parent's OpenMP and tokenizer threads' state
        self._payload = pickle.dumps(calls, protocol=pickle.HIGHEST_PROTOCOL)
        self._workers = [_Worker(self._ctx, self._payload, torch_threads, i) for i in range(n)]
        try:
            for w in self._workers:
                w.wait_ready(START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for w in self._workers:
            self._idle.put(w)
        self._lock = threading.Lock()

    def call(self, kind: str, items: list) -> Sequence[Any]:
        worker = self._idle.get()
        try:
            try:
                worker.conn.send((kind, items))
                status, value = worker.conn.recv()
            except (EOFError, OSError) as e:  # the worker died: the pipe is closed or broken
                code = worker.process.exitcode
                worker = self._restart(worker)
                raise WorkerCrashed(f"the model worker process exited (exit code {code}) while running this batch; it has been restarted") from e
        finally:
            self._idle.put(worker)
        if status == "error":
            raise value
        return value

    def _restart(self, dead: _Worker) -> _Worker:
        log.error("model worker %d (pid %s) exited with code %s; restarting it", dead.index, dead.process.pid, dead.process.exitcode)
        dead.close()
        worker = _Worker(self._ctx, self._payload, self.torch_threads, dead.index)
        worker.wait_ready(START_TIMEOUT_S)
        with self._lock:
            self._workers[dead.index] = worker
        return worker

    @property
    def alive(self) -> bool:
        with self._lock:
            return all(w.process.is_alive() for w in self._workers)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def close(self) -> None:
        for w in self._workers:
            w.close()


def _worker_main(conn: Any, payload: bytes, torch_threads: int | None) -> None:
    """A worker process: load the models, then answer (kind, items) messages until told to stop (None)."""
    try:
        import torch

        if torch_threads is not None:
            torch.set_num_threads(max(1, torch_threads))
        calls: ModelCalls = pickle.loads(payload)
        # The models are hundreds of thousands of long-lived objects; frozen, the garbage collector
        # stops re-scanning them in every full collection (a pause in the middle of some batch).
        gc.collect()
        gc.freeze()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("failed", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server went away
            return
        if message is None:
            return
        kind, items = message
        try:
            reply = ("ok", list(calls(kind, items)))
        except BaseException as e:  # noqa: BLE001 - the parent decides (the batcher retries items alone)
            reply = ("error", e)
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - an unpicklable result or exception
            conn.send(("error", RuntimeError(f"a model call's result could not be sent back: {type(e).__name__}: {e}")))
