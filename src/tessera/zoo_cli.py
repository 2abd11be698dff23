"""`tessera models` (the catalogue of pretrained towers) and `tessera models check` (run each installed one).

The check feeds every installed tower a built-in sample through the same preprocessing a
schema would give it (a synthetic photo-like image, a one-second tone followed by silence, a
rendered line of text, a sentence), so it shows that the weights load and run on this machine,
and how long that takes. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table as RichTable

from tessera import zoo

console = Console()
models_app = typer.Typer(
    help="Pretrained towers that work offline: list them (no command), or run each installed one (check).",
    invoke_without_command=True,
)

SAMPLE_RATE = 16000


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.callback()
def list_command(ctx: typer.Context) -> None:
    """List the towers: modality, whether installed, size, licence, output."""
    if ctx.invoked_subcommand is not None:
        return
    table = RichTable(title="pretrained towers (tessera.zoo)")
    for column in ("tower", "modality", "installed", "size", "output", "licence"):
        table.add_column(column, overflow="fold")
    for info in zoo.CATALOG.values():
        installed = zoo.is_installed(info.name)
        size = zoo.installed_size_mb(info.name) if installed else info.size_mb
        table.add_row(info.name, info.modality, "yes" if installed else "no", f"{size:.0f} MB", info.shape, info.licence_short)
    console.print(table)
    for info in zoo.CATALOG.values():
        console.print(f"[bold]{info.name}[/bold] ({info.kind}, runs in {info.runtime}): {info.output}")
        console.print(f"  licence: {info.licence}; upstream: {info.upstream}")
        if info.note:
            console.print(f"  note: {info.note}")
        if not zoo.is_installed(info.name):
            console.print(f"  install: {info.install}")


# -- built-in samples ----------------------------------------------------------------------------
def sample_image(size: int = 256) -> bytes:
    """A PNG with smooth colour gradients and a few shapes: photo-like enough to exercise a CNN."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([x, y, 1 - x * y], axis=-1)
    img = Image.fromarray((rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((size // 4, size // 4, size // 2, size // 2), fill=(200, 40, 40))
    draw.rectangle((size // 2, size // 2, 7 * size // 8, 7 * size // 8), fill=(20, 120, 30))
    return _png(img)


def sample_text_image() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(img).text((20, 30), "OPEN 24 HOURS", fill="black", font=ImageFont.load_default(size=36))
    return _png(img)


def sample_wave(seconds: float = 2.0) -> np.ndarray:
    """One second of a 440 Hz tone with a little noise, then silence, at 16 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (t < 1.0) + 0.003 * np.random.default_rng(0).standard_normal(t.size)
    return wave.astype(np.float32)


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _wav(wave: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, SAMPLE_RATE, format="WAV")
    return buf.getvalue()


def _run_encoder(name: str) -> tuple[str, str]:
    """Build the tower and its input the way a schema would; returns (output shape, detail)."""
    import torch

    from tessera.encoders.input_options import merge_input_options
    from tessera.model import build_encoder
    from tessera.preprocess import LoadContext, collate_samples, create_preprocessor

    info = zoo.tower_info(name)
    options, encoder_options = zoo.packaged_options(name, max_length=32)
    if info.modality == "text":
        value: Any = "a photo of two dogs playing on a road"
    else:
        value = sample_image() if info.modality == "image" else _wav(sample_wave())
    options = merge_input_options(name, info.modality, options, where=f"tower {name!r}")
    pre = create_preprocessor(info.modality, ["sample"], **options)
    encoder = build_encoder(name, pre, 128, encoder_options).eval()
    batch = collate_samples(pre, [pre.load([value], LoadContext())])
    with torch.no_grad():
        out, _ = encoder(batch)
    return str(tuple(out.shape)), f"norm {float(out.norm()):.2f}"


def _run_function(name: str) -> tuple[str, str]:
    if name == "transcribe":
        from tessera.transcribe import transcribe

        text = transcribe(sample_wave(), SAMPLE_RATE)
        return "text", f"tone transcribed as {text!r}"
    from tessera.ocr import read_text

    text = read_text(sample_text_image())
    return "text", f"read {text!r} from a rendered 'OPEN 24 HOURS'"


@models_app.command("check")
def check_command(
    tower: Optional[list[str]] = typer.Argument(None, help="Towers to check (default: every installed one)."),
) -> None:
    """Run each installed tower on a built-in sample and print its output shape and time (load + first run)."""
    names = tower or [n for n in zoo.CATALOG if zoo.is_installed(n)]
    for n in names:
        zoo.tower_info(n)  # unknown names fail before anything runs
    table = RichTable(title="tower check (built-in samples)")
    for column in ("tower", "status", "output", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    import tessera.encoders  # noqa: F401  (import cost is Tessera's, not the first tower's)

    failures = 0
    for name in names:
        missing = zoo.missing_packages(name)
        if missing:
            table.add_row(name, "not installed", "", "", zoo.tower_info(name).install)
            continue
        run: Callable[[str], tuple[str, str]] = _run_encoder if zoo.tower_info(name).kind == "encoder" else _run_function
        start = time.perf_counter()
        try:
            shape, detail = run(name)
            status = "ok"
        except Exception as e:  # noqa: BLE001 - a check reports every tower, whatever breaks in one
            shape, detail, status = "", f"{type(e).__name__}: {e}", "FAILED"
            failures += 1
        table.add_row(name, status, shape, f"{time.perf_counter() - start:.2f}", detail)
    console.print(table)
    if failures:
        raise typer.Exit(1)
