"""How one server is set up: keys, limits, batching, where its model calls run, what one generation may cost."""

from __future__ import annotations

from typing import ClassVar

from tessera.settings import PathLike, Settings


class ServeConfig(Settings):
    """Server settings; the CLI flags of ``tessera serve`` map onto these one to one."""

    section: ClassVar[str] = "serve"
    keys_file: PathLike
    feedback_db: str = "tessera-feedback.db"
    max_body_bytes: int = 10 * 1024 * 1024
    rate_per_minute: int = 1200  # per key, unless the key sets its own
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 10.0  # waited only under concurrency (see Batcher)
    cors_origins: list[str] = []  # empty: CORS off
    log_requests: bool = True  # keep predict/search inputs so feedback can become training data
    feedback_max_mb: float | None = 1024.0  # what the feedback store keeps; the oldest requests go first past it
    feedback_retention_days: float | None = 30.0  # requests nobody gave feedback on are deleted after this
    # Connections (tessera.serve.connections): a request's headers must arrive within
    # header_timeout_s of its first byte (and a new connection must start one that soon); its body
    # within body_timeout_s plus one second per body_min_rate bytes; idle keep-alive connections
    # close after keep_alive_s; past max_connections open ones, new connections are closed at once.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_rate: int = 10_000
    keep_alive_s: float = 5.0
    max_connections: int = 1000
    # Threads per model call (per worker process when model_processes > 0); None leaves torch's
    # setting. The CLI gives cores / processes, or cores - 1 in-process: on a busy 2-core machine two
    # OpenMP threads spin against each other and the HTTP side (a short text took 1 s, not 45 ms).
    torch_threads: int | None = None
    # 0: models run in this process, on the batchers' threads. N: N worker processes, each with a
    # copy of the models (N x the memory), so model calls never wait on the event loop's GIL.
    model_processes: int = 0
    # Generation (tessera.serve.generators): what one request may ask for, and how many may queue per model.
    max_new_tokens: int = 512  # most tokens one text reply may ask for (max_tokens)
    max_images: int = 4  # most images one /v1/images/generations request may ask for (n)
    max_sampling_steps: int = 100  # most diffusion steps a request may ask for
    generation_queue: int = 8  # requests running or waiting per generator; more get a 503 with Retry-After
