"""`tessera align CONFIG`: train a shared embedding space and save it as an embedder folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command("align")(align_command)


def align_command(
    config: Path = typer.Argument(..., help="A YAML config with data, model and train sections (see tessera.align.config)."),
    output: Optional[Path] = typer.Option(None, help="Where to save the embedder (default: the config's output)."),
) -> None:
    """Train encoders into one embedding space (CLIP or SigLIP loss) and save them for indexing and search."""
    from tessera.align.config import load_align_config, run_align

    cfg = load_align_config(config)
    embedder, history, out = run_align(cfg, output)
    last = history[-1]
    recall = last.get("val_recall@1")
    console.print(
        f"saved embedder ({', '.join(f'{n}: {m}' for n, m in embedder.inputs.items())}; {embedder.dim}-d) to [bold]{out}[/bold]"
        + (f"; validation Recall@1 {recall:.3f} (chance {last['val_chance@1']:.3f}), Recall@5 {last['val_recall@5']:.3f} "
           f"(chance {last['val_chance@5']:.3f}), over {last['val_items'][0]} and {last['val_items'][1]} unique items"
           if recall is not None else "")
    )
