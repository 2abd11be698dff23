"""Command-line entry points for serving: `tessera serve` (and `serve keys ...`), `tessera feedback export`, `tessera monitor`.

FastAPI, uvicorn and SQLAlchemy are imported inside the commands, so `tessera --help`
stays fast and the rest of the CLI works without the `serve` extra.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table as RichTable

from tessera.errors import TesseraError
from tessera.threads import available_cores

console = Console()
DEFAULT_KEYS = Path("tessera-keys.json")


def register(app: typer.Typer) -> None:
    """Add `serve` (with `serve keys add/revoke/list`), `feedback export` and `monitor` to the main app."""
    serve_app = typer.Typer(help="Serve models over HTTP; `tessera serve keys` manages API keys.", invoke_without_command=True)
    serve_app.callback()(serve_command)
    keys_app = typer.Typer(help="API keys (only their hashes are stored).", no_args_is_help=True)
    keys_app.command("add")(keys_add)
    keys_app.command("revoke")(keys_revoke)
    keys_app.command("list")(keys_list)
    serve_app.add_typer(keys_app, name="keys")
    app.add_typer(serve_app, name="serve")
    feedback_app = typer.Typer(help="User feedback collected by the server.", no_args_is_help=True)
    feedback_app.command("export")(feedback_export)
    app.add_typer(feedback_app, name="feedback")
    app.command("monitor")(monitor_command)


def serve_command(
    ctx: typer.Context,
    model: Optional[Path] = typer.Option(None, help="A saved model folder (for /v1/predict)."),
    index: Optional[Path] = typer.Option(None, help="A search index folder (for /v1/search; its embedder serves /v1/embed)."),
    embedder: Optional[Path] = typer.Option(None, help="An embedder folder (default: the one the index records)."),
    keys: Path = typer.Option(DEFAULT_KEYS, help="The API keys file (create keys with `tessera serve keys add`)."),
    feedback_db: str = typer.Option("tessera-feedback.db", help="SQLite file or SQLAlchemy URL (postgresql://...) for requests and feedback."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all: put TLS in front)."),
    port: int = typer.Option(8000),
    batching: bool = typer.Option(True, help="Dynamic batching of concurrent requests."),
    max_batch: int = typer.Option(32, help="Most requests in one model call."),
    max_wait_ms: float = typer.Option(10.0, help="Longest a batch waits for more requests (only under concurrency; a lone request never waits)."),
    max_body_mb: float = typer.Option(10.0, help="Largest request body accepted."),
    rate_per_minute: int = typer.Option(1200, help="Requests per minute per key (a key may set its own)."),
    cors_origin: list[str] = typer.Option([], "--cors-origin", help="Allow browser calls from this origin (repeatable; default: CORS off)."),
    log_requests: bool = typer.Option(True, help="Keep predict/search inputs so feedback can become training data."),
    feedback_max_mb: float = typer.Option(
        1024.0, help="Most the feedback store keeps; past it the oldest requests go first (0: no cap)."),
    feedback_retention_days: float = typer.Option(
        30.0, help="Requests without feedback are deleted after this many days (0: kept)."),
    header_timeout: float = typer.Option(10.0, help="Seconds a client has to send a request's headers."),
    body_timeout: float = typer.Option(
        30.0, help="Seconds a client has to send a request's body, plus one per --body-min-rate bytes."),
    body_min_rate: int = typer.Option(10_000, help="Bytes per second a slow upload must keep up (see --body-timeout)."),
    keep_alive: float = typer.Option(5.0, help="Seconds an idle keep-alive connection stays open."),
    max_connections: int = typer.Option(1000, help="Open connections at most; new ones past it are closed at once."),
    model_processes: Optional[int] = typer.Option(
        None, help="Worker processes that run the models, each with its own copy (default: one per CPU core up to 4; 0 runs them in the server process)."),
    torch_threads: Optional[int] = typer.Option(None, help="Threads per model call (default: cores / model processes; in-process: cores - 1, leaving one for HTTP)."),
    quantize: bool = typer.Option(False, help="Int8 Linear layers: faster on CPU, outputs move slightly (see benchmarks/serve.py)."),
    runtime: str = typer.Option("torch", help="'onnx': run sentence-transformers text inputs in ONNX Runtime (exported at start; needs tessera[onnx])."),
    generator: list[str] = typer.Option([], "--generator", help="A text model for /v1/generate and /v1/chat/completions (repeatable): a saved generator folder, a pretrained LM (gguf:gemma3-270m, a folder) or 'whisper' to transcribe."),
    image_generator: list[Path] = typer.Option([], "--image-generator", help="A saved text-to-image generator folder for /v1/images/generations (repeatable)."),
    speech_generator: list[Path] = typer.Option([], "--speech-generator", help="A saved text-to-speech generator folder for /v1/audio/speech (repeatable)."),
    max_new_tokens: int = typer.Option(512, help="Most tokens one generated reply may ask for."),
) -> None:
    """Start the HTTP API and search page under uvicorn."""
    if ctx.invoked_subcommand is not None:
        return
    if not keys.is_file():
        raise TesseraError(f"no keys file at {keys}; create a key first: tessera serve keys add NAME --keys {keys}")
    import uvicorn

    from tessera.serve.app import create_app
    from tessera.serve.config import ServeConfig
    from tessera.serve.connections import fit_file_limit, uvicorn_config
    from tessera.serve.state import load_models

    config = ServeConfig(
        keys_file=keys, feedback_db=feedback_db, max_body_bytes=int(max_body_mb * 1024 * 1024), rate_per_minute=rate_per_minute,
        batching=batching, max_batch=max_batch, max_wait_ms=max_wait_ms, cors_origins=list(cors_origin), log_requests=log_requests,
        max_new_tokens=max_new_tokens,
        feedback_max_mb=feedback_max_mb or None, feedback_retention_days=feedback_retention_days or None,
        header_timeout_s=header_timeout, body_timeout_s=body_timeout, body_min_rate=body_min_rate,
        keep_alive_s=keep_alive, max_connections=max_connections,
    )
    config.model_processes = model_processes if model_processes is not None else default_model_processes()
    config.torch_threads = torch_threads if torch_threads is not None else default_torch_threads(config.model_processes)
    loaded = load_models(model, index, embedder, quantize=quantize, runtime=runtime, generators=generator,
                         image_generators=image_generator, speech_generators=speech_generator)
    app = create_app(config, **loaded)
    # The loaded models are long-lived objects; frozen, the garbage collector stops re-scanning them.
    gc.collect()
    gc.freeze()
    fit_file_limit(config)
    console.print(f"serving on [bold]http://{host}:{port}[/bold] (page at /, spec at /openapi.json)")
    uvicorn.Server(uvicorn_config(app, config, host, port)).run()


def default_model_processes() -> int:
    """One worker process per core, up to 4 (each holds a copy of the models); none on one core.

    Measured on 2 cores (benchmarks/serve.py): two worker processes took text embedding at
    concurrency 32 from ~300 to ~500 req/s, where model threads in the server process could not
    (the event loop and the model shared one GIL). Past 4, copies cost memory for little gain
    over more threads per process.
    """
    cores = available_cores()
    return 0 if cores < 2 else min(cores, 4)


def default_torch_threads(model_processes: int = 0) -> int:
    """Threads per model call: the cores shared among worker processes; in-process, all but one (for HTTP)."""
    cores = available_cores()
    if model_processes:
        return max(1, cores // model_processes)
    return max(1, cores - 1)


def keys_add(
    name: str = typer.Argument(..., help="Who or what the key is for."),
    keys: Path = typer.Option(DEFAULT_KEYS, help="The API keys file."),
    rate_per_minute: Optional[int] = typer.Option(None, help="This key's own rate limit."),
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    from tessera.serve.auth import KeyStore

    record, key = KeyStore(keys).add(name, rate_per_minute)
    console.print(f"key id [bold]{record.id}[/bold] for {name!r}; the key (shown only now):")
    print(key)


def keys_revoke(key_id: str = typer.Argument(..., help="The id shown by `keys add` / `keys list`."), keys: Path = typer.Option(DEFAULT_KEYS)) -> None:
    """Revoke a key; a running server refuses it from its next request."""
    from tessera.serve.auth import KeyStore

    record = KeyStore(keys).revoke(key_id)
    console.print(f"revoked key {record.id} ({record.name})")


def keys_list(keys: Path = typer.Option(DEFAULT_KEYS)) -> None:
    """The keys in a keys file (ids and names, never the keys)."""
    from tessera.serve.auth import KeyStore

    table = RichTable(title=str(keys))
    for col in ("id", "name", "rate/min", "revoked"):
        table.add_column(col)
    for r in KeyStore(keys).list():
        table.add_row(r.id, r.name, str(r.rate_per_minute or "default"), "yes" if r.revoked else "no")
    console.print(table)


def feedback_export(
    database: str = typer.Argument(..., help="The server's --feedback-db (a SQLite file or a SQLAlchemy URL)."),
    output: Path = typer.Argument(..., help="The training table to write (.parquet; .csv when no media)."),
) -> None:
    """Turn feedback into a training table: corrected or confirmed predictions, and rated search results."""
    from tessera.serve.feedback import export_training_table

    frame, skipped = export_training_table(database, output)
    from rich.markup import escape

    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(line)}", highlight=False)
    note = f" ({len(skipped)} skipped)" if skipped else ""
    console.print(f"wrote {len(frame)} row(s) to [bold]{output}[/bold]{note}")


def monitor_command(
    url: str = typer.Option("http://127.0.0.1:8000", help="The server."),
    key: Optional[str] = typer.Option(None, help="An API key (default: $TESSERA_API_KEY)."),
) -> None:
    """Drift of the data a running server receives against its training data."""
    import httpx

    key = key or os.environ.get("TESSERA_API_KEY")
    if not key:
        raise TesseraError("give an API key: --key KEY or TESSERA_API_KEY")
    try:
        r = httpx.get(url.rstrip("/") + "/v1/monitor", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except httpx.HTTPError as e:
        raise TesseraError(f"cannot reach {url}: {e}") from None
    if r.status_code != 200:
        raise TesseraError(f"{url} answered {r.status_code}: {r.json().get('detail', r.text) if r.headers.get('content-type', '').endswith('json') else r.text}")
    print_monitor(r.json())


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def print_monitor(s: dict) -> None:
    console.print(f"[bold]prediction requests:[/bold] {s['prediction_rows']}")
    if s["missing_rate"]:
        t = RichTable(title="missing inputs (share of prediction requests)")
        t.add_column("input")
        t.add_column("missing rate", justify="right")
        for name, rate in s["missing_rate"].items():
            t.add_row(name, _fmt(rate))
        console.print(t)
    if s["numeric"]:
        t = RichTable(title="numeric drift (incoming vs training)")
        for col in ("column", "n", "train mean", "train std", "mean", "std", "shift (SDs)"):
            t.add_column(col, justify="right")
        for col, st in s["numeric"].items():
            t.add_row(col, str(st["n"]), _fmt(st["train_mean"]), _fmt(st["train_std"]), _fmt(st["mean"]), _fmt(st["std"]), _fmt(st["shift_sd"]))
        console.print(t)
    if s["embeddings"]:
        t = RichTable(title="embedding drift (recent queries vs the collection)")
        for col in ("modality", "queries", "reference", "centroid distance", "MMD²"):
            t.add_column(col, justify="right")
        for m, e in s["embeddings"].items():
            t.add_row(m, str(e["n"]), str(e["reference_n"]), _fmt(e.get("centroid_distance")), _fmt(e.get("mmd2")))
        console.print(t)
