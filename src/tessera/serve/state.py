"""What a running server holds: its loaded models and where their calls run, keys, limits, drift, metrics, feedback.

:func:`load_models` loads what ``tessera serve`` names (folders); :meth:`ServerState.start`
wraps loaded objects (tests and benchmarks pass their own). The state lives on
``app.state.tessera`` and reaches the routes through :mod:`tessera.serve.dependencies`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from tessera.errors import TesseraError
from tessera.ratelimit import RateLimiter
from tessera.serve import inputs as rq
from tessera.serve.auth import KeyStore
from tessera.serve.batching import Batcher
from tessera.serve.config import ServeConfig
from tessera.serve.feedback import FeedbackStore
from tessera.serve.generators import Generators
from tessera.serve.metrics import Metrics
from tessera.serve.monitoring import DriftMonitor, reference_vectors
from tessera.serve.workers import InProcess, ModelCalls, WorkerProcesses

log = logging.getLogger("tessera.serve")
MAX_PENDING_WRITES = 256


class Models:
    """Loaded models, where their calls run, their batchers, and what requests may send to each."""

    def __init__(self, config: ServeConfig, metrics: Metrics, predictor: Any = None, embedder: Any = None,
                 searcher: Any = None, onnx_text: dict[str, Any] | None = None) -> None:
        self.predictor, self.searcher, self.onnx_text = predictor, searcher, onnx_text or {}
        self.embedder = embedder if embedder is not None else (searcher.embedder if searcher is not None else None)
        max_batch = config.max_batch if config.batching else 1
        wait = config.max_wait_ms if config.batching else 0.0
        for m in self.onnx_text.values():
            m.threads = config.torch_threads or 1
        calls = ModelCalls(predictor, self.embedder, self.onnx_text)
        if config.model_processes and (predictor is not None or self.embedder is not None):
            self.runner = WorkerProcesses(calls, config.model_processes, config.torch_threads)
        else:
            self.runner = InProcess(calls)
        threads = max(1, self.runner.processes)  # one batch in flight per worker process
        batching = dict(max_batch=max_batch, max_wait_ms=wait, on_batch=metrics.on_batch, workers=threads)
        self.predict_batcher = self.embed_batcher = None
        if predictor is not None:
            self.predict_fields = rq.fields_of(predictor.pipeline.preprocessors)
            self.predict_batcher = Batcher(partial(self.runner.call, "predict"), name="predictor", **batching)
        if self.embedder is not None:
            self.embed_fields = rq.fields_of(self.embedder.pipeline.preprocessors)
            self.embed_batcher = Batcher(partial(self.runner.call, "embed"), name="embedder", **batching)

    @property
    def alive(self) -> bool:
        return self.runner.alive and all(b.alive for b in (self.predict_batcher, self.embed_batcher) if b is not None)

    def close(self) -> None:
        for b in (self.predict_batcher, self.embed_batcher):
            if b is not None:
                b.close()
        self.runner.close()


@dataclass
class ServerState:
    """Everything the routes share; one per app."""

    config: ServeConfig
    models: Models
    keys: KeyStore
    limiter: RateLimiter
    monitor: DriftMonitor
    metrics: Metrics
    store: FeedbackStore
    writer: ThreadPoolExecutor  # one thread: feedback-store writes in arrival order, no lock contention
    generators: Generators
    _pending: int = 0  # requests waiting for the writer (changed on the event loop only)

    @classmethod
    def start(cls, config: ServeConfig, predictor: Any = None, embedder: Any = None, searcher: Any = None,
              onnx_text: dict[str, Any] | None = None, generators: Mapping[str, Any] | None = None) -> ServerState:
        """Wrap loaded models: start their batchers (and worker processes), open the keys and feedback stores.

        ``generators``: id -> loaded generator (see :mod:`tessera.serve.generators`).
        """
        if predictor is None and embedder is None and searcher is None and not generators:
            raise TesseraError(
                "nothing to serve: give a model (--model), an index (--index), an embedder (--embedder) "
                "or a generator (--generator, --image-generator, --speech-generator)"
            )
        if config.torch_threads is not None:
            import torch

            torch.set_num_threads(max(1, config.torch_threads))
        keys = KeyStore(config.keys_file)
        monitor = DriftMonitor(predictor.pipeline if predictor is not None else None, reference_vectors(searcher))
        metrics = Metrics(monitor)
        models = Models(config, metrics, predictor, embedder, searcher, onnx_text)
        mb = config.feedback_max_mb
        store = FeedbackStore(config.feedback_db, max_bytes=None if mb is None else int(mb * 1024 * 1024),
                              retention_days=config.feedback_retention_days)
        return cls(config, models, keys, RateLimiter(), monitor, metrics, store,
                   ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-feedback"),
                   Generators(generators, config))

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a feedback-store write on the writer thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)

    async def log_request(self, request_id: str, route: str, key_id: str, cells: dict[str, Any], output: Any,
                          fields: Mapping[str, rq.Field], target: list[str] | None = None) -> None:
        """Keep a request's inputs and output, so that feedback on it can become training data (unless turned off).

        Media cells are kept as their preprocessor's compact copy (``fields``: each cell's field, by the cells' keys).
        When the writer falls ``MAX_PENDING_WRITES`` behind, the request is answered but not kept:
        its queue would otherwise hold every waiting request's media in memory.
        """
        if not self.config.log_requests:
            return
        if self._pending >= MAX_PENDING_WRITES:
            self.metrics.errors.labels("feedback_log_dropped").inc()
            return
        media = {c: fields[c].pre for c, v in cells.items() if isinstance(v, bytes) and c in fields}
        self._pending += 1
        try:
            await self.write(self.store.log_request, request_id, route, key_id, cells, output, target, media)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self.models.close()
        self.writer.shutdown(wait=True)


def load_models(
    model: str | os.PathLike | None,
    index: str | os.PathLike | None,
    embedder: str | os.PathLike | None,
    *,
    quantize: bool = False,
    runtime: str = "torch",
    generators: Sequence[str] = (),
    image_generators: Sequence[str | os.PathLike] = (),
    speech_generators: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    """Load what the CLI names: a predictor folder, an index (with its recorded embedder), an embedder folder, generators.

    ``quantize`` swaps every model's Linear layers for int8 ones (:mod:`tessera.quantize`):
    faster on CPU, slightly different outputs. ``runtime="onnx"`` also exports the embedder's
    sentence-transformers text inputs to ONNX Runtime (int8 weights with ``quantize``), returned
    as ``onnx_text`` for :func:`~tessera.serve.app.create_app`; other inputs and the predictor stay in torch.
    Generators (text, image, speech) are loaded by :func:`tessera.serve.generators.load_generators`.
    """
    if runtime not in ("torch", "onnx"):
        raise TesseraError(f"runtime must be 'torch' or 'onnx', got {runtime!r}")
    out: dict[str, Any] = {}
    if model is not None:
        from tessera.predictor import Predictor

        out["predictor"] = Predictor.load(model)
    if embedder is not None:
        from tessera.align.embedder import Embedder

        out["embedder"] = Embedder.load(embedder)
    if index is not None:
        from tessera.index.search import Searcher

        out["searcher"] = Searcher.open(index, out.get("embedder"))
    if runtime == "onnx":
        from tessera.onnx_text import onnx_text_inputs

        source = out.get("embedder") or getattr(out.get("searcher"), "embedder", None)
        out["onnx_text"] = onnx_text_inputs(source, quantize=quantize) if source is not None else {}
        if not out["onnx_text"]:
            log.warning("--runtime onnx: no sentence-transformers text input to export; everything runs in torch")
    if generators or image_generators or speech_generators:
        from tessera.serve.generators import load_generators

        out["generators"] = load_generators(generators, image_generators, speech_generators)
    if quantize:
        from tessera.quantize import quantize_int8

        holders = [out.get("predictor"), out.get("embedder"), getattr(out.get("searcher"), "embedder", None)]
        for holder in {id(h): h for h in holders if h is not None}.values():
            holder.model = quantize_int8(holder.model)
    return out
