"""`tessera index build|info|delete` and `tessera search`: fill a vector index from a table, then query it.

LanceDB and the models are imported inside the commands: `tessera --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table as RichTable

if TYPE_CHECKING:
    import pandas as pd

console = Console()
index_app = typer.Typer(help="Build and maintain vector indexes for cross-modal search.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search_command)


@index_app.command("build")
def build_command(
    model: Path = typer.Argument(..., help="An embedder folder (from `tessera align`)."),
    table: Path = typer.Argument(..., help="The table whose rows to index."),
    out: Path = typer.Option(..., "--out", "-o", help="The index folder (created, or updated when it exists)."),
    input_name: str = typer.Option(..., "--input", "-i", help="Which input of each row to embed (an input name or a modality)."),
    id_column: Optional[str] = typer.Option(None, help="Column of unique row ids (default: the row number)."),
    metadata: list[str] = typer.Option([], "--metadata", "-m", help="A column to store for filters and display (repeatable; default: all non-media columns)."),
    batch_size: int = typer.Option(512, help="Rows per embedding batch and per atomic commit."),
    on_error: str = typer.Option("raise", help="A row that cannot be read: 'raise' (stop, naming it) or 'skip' (report and go on)."),
    prune: bool = typer.Option(False, help="Delete index rows whose id is no longer in the table."),
    runner: str = typer.Option("local", help="'local' (this process) or 'ray' (decode and embed in a Ray actor pool)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: 'auto', 'ray://HOST:PORT' (default: a local cluster)."),
    workers: int = typer.Option(2, help="Ray actors, one model each (with --runner ray)."),
    feature_cache: bool = typer.Option(True, help="Read (and keep) frozen towers' features in the feature cache, as training did."),
    cache_dir: Optional[Path] = typer.Option(None, help="The feature cache (default: the data home's, TESSERA_CACHE/features)."),
) -> None:
    """Embed one input of every row into the index; re-running embeds only new or changed rows (resumable)."""
    from tessera.align.embedder import Embedder
    from tessera.features import cache_folder
    from tessera.config import check_runner
    from tessera.index.build import index_table

    build = index_table
    if check_runner(runner, address) == "ray":
        from functools import partial

        from tessera.scale.embed import build_index_ray

        build = partial(build_index_ray, address=address, num_actors=workers)
    embedder = Embedder.load(model)
    embedder.feature_cache = cache_folder(cache_dir) if feature_cache else None
    result = build(
        embedder, table, out, input_name, embedder_path=model, id_column=id_column,
        metadata=metadata or None, batch_size=batch_size, on_error=on_error, prune=prune,
    )
    c = result.counts
    console.print(
        f"index [bold]{out}[/bold]: {len(result.index)} rows ({c.added} added, {c.updated} re-embedded, "
        f"{c.unchanged} unchanged, {result.deleted} deleted, {len(result.skipped)} skipped)"
    )
    if result.duplicates:
        console.print(
            f"{result.duplicates} row(s) hold a file whose content an earlier row holds: each file is stored once, "
            "with its first row's id and metadata"
        )


@index_app.command("info")
def info_command(index: Path = typer.Argument(..., help="An index folder.")) -> None:
    """Rows, dimension, ANN index kind, metadata columns and the embedder that filled it."""
    from tessera.index import VectorIndex
    from tessera.index.build import read_info

    vi = VectorIndex.open(index)
    out = RichTable(title=str(index))
    out.add_column("what")
    out.add_column("value")
    for k, v in [("rows", len(vi)), ("dim", vi.dim), ("metric", vi.metric), ("ann", vi.ann_kind or "none (exact)"),
                 ("metadata", ", ".join(vi.metadata_columns))]:
        out.add_row(k, str(v))
    for k, v in read_info(index).items():
        out.add_row(k, str(v))
    console.print(out)


@index_app.command("delete")
def delete_command(
    index: Path = typer.Argument(..., help="An index folder."),
    ids: list[str] = typer.Argument(..., help="Ids of the rows to delete."),
) -> None:
    """Delete rows by id (unknown ids are ignored)."""
    from tessera.index import VectorIndex

    n = VectorIndex.open(index).delete(ids)
    console.print(f"deleted {n} row(s) from {index}")


def search_command(
    index: Path = typer.Argument(..., help="An index folder built by `tessera index build`."),
    text: Optional[str] = typer.Option(None, help="A text query."),
    image: Optional[Path] = typer.Option(None, help="An image file as the query."),
    audio: Optional[Path] = typer.Option(None, help="A sound file as the query."),
    video: Optional[Path] = typer.Option(None, help="A video file as the query."),
    text_weight: float = typer.Option(1.0, help="Weight of the text part of a composed query."),
    image_weight: float = typer.Option(1.0, help="Weight of the image part."),
    audio_weight: float = typer.Option(1.0, help="Weight of the audio part."),
    video_weight: float = typer.Option(1.0, help="Weight of the video part."),
    k: int = typer.Option(10, "-k", "--k", help="How many results."),
    where: Optional[str] = typer.Option(None, help="Metadata filter, SQL-like: \"split = 'test' AND label != '3'\"."),
    model: Optional[Path] = typer.Option(None, help="The embedder folder, when the index does not record it."),
    output: Optional[Path] = typer.Option(None, help="Write the results to this CSV, JSON or Parquet file instead of printing."),
) -> None:
    """Search with any modality; several at once make a composed query (weighted sum of unit vectors)."""
    from tessera.errors import TesseraError
    from tessera.index.search import Searcher
    from tessera.files import atomic_path

    parts, weights = [], []
    for modality, value, weight in [("text", text, text_weight), ("image", image, image_weight),
                                    ("audio", audio, audio_weight), ("video", video, video_weight)]:
        if value is None:
            continue
        if modality != "text" and not Path(value).is_file():
            raise TesseraError(f"--{modality}: file not found: {value}")
        parts.append((modality, str(value)))
        weights.append(weight)
    if not parts:
        raise TesseraError("give a query: --text, --image, --audio or --video (several make a composed query)")
    hits = Searcher.open(index, model).search(parts, weights=weights, k=k, where=where)
    if output is not None:
        with atomic_path(output) as tmp:
            suffix = output.suffix.lower()
            if suffix in (".parquet", ".pq"):
                hits.to_parquet(tmp)
            elif suffix == ".json":
                hits.to_json(tmp, orient="records", indent=2)
            else:
                hits.to_csv(tmp, index=False)
        console.print(f"wrote {len(hits)} results to {output}")
        return
    console.print(hits_table(hits, f"{len(hits)} results from {index}" + (f" where {where}" if where else "")))


def hits_table(hits: "pd.DataFrame", title: str, width: int | None = None) -> RichTable:
    """Search results for a terminal: rank and score, then as many metadata columns as fit the width
    (long values cut, binary ones left out), one line per hit; the caption names the columns left out."""
    width = width or console.width
    candidates = [c for c in hits.columns if c not in ("rank", "score") and not hits[c].map(_is_binary).any()]
    shown, used = [], 1 + (4 + 3) + (5 + 3)  # the left border, rank and score (each column pads and borders 3)
    for c in candidates:
        need = min(max(len(c), *(len(str(v)) for v in hits[c])), 40) + 3
        if used + need > width:
            break
        shown.append(c)
        used += need
    table = RichTable(title=title)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True, min_width=5)
    for c in shown:
        table.add_column(c, no_wrap=True, overflow="ellipsis", max_width=40)
    for _, row in hits.iterrows():
        table.add_row(str(row["rank"]), f"{row['score']:.3f}", *(str(row[c]) for c in shown))
    hidden = candidates[len(shown):]
    if hidden:
        table.caption = f"not shown: {', '.join(hidden)} (--output hits.csv or .json has every column)"
    return table


def _is_binary(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))
