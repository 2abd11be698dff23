"""`tessera generate fit CONFIG` and `tessera generate MODEL --prompt ...` for images and speech.

``tessera generate MODEL`` (no sub-command word) samples from a saved generator: an image
grid (PNG) for text-to-image models, WAV files for text-to-speech ones. The group
dispatches any first argument that is not one of its commands to ``sample``, so a model
path can stand where a command name would. This module lives outside ``tessera.generate``
so that registering the commands does not import that package (transformers and all: ~5 s
on every ``tessera`` call); the commands import what they need when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from tessera.errors import SchemaError

console = Console()


class ModelOrCommand(TyperGroup):
    """A group whose unknown first word is a model for the default ``sample`` command."""

    default_command = "sample"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


generate_app = typer.Typer(
    cls=ModelOrCommand,
    help="Generate images or speech from text: `generate fit CONFIG`, then `generate MODEL --prompt TEXT`.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")


def load_any_config(path: Path) -> Any:
    """A generation config: ``task: text2image`` (default) or ``task: text2speech``."""
    from tessera.files import read_yaml

    raw = read_yaml(path)
    task = raw.get("task", "text2image") if isinstance(raw, dict) else None
    base = path.resolve().parent
    if task == "text2image":
        from tessera.generate import text2image

        return text2image, text2image.load_config(raw, str(path), base)
    if task == "text2speech":
        from tessera.generate import speech

        return speech, speech.load_config(raw, str(path), base)
    raise SchemaError(f"{path}: task must be text2image or text2speech, got {task!r}")


@generate_app.command("fit")
def fit_command(
    config: Path = typer.Argument(..., help="A YAML config (see configs/generate/)."),
    output: Optional[Path] = typer.Option(None, help="Where to save the generator (default: the config's output)."),
) -> None:
    """Train a text-to-image or text-to-speech diffusion model and save it."""
    module, cfg = load_any_config(config)
    generator, out = module.run(cfg, output)
    history = generator.meta.get("history") or [{}]
    console.print(
        f"saved {cfg.task} generator to [bold]{out}[/bold] (final loss {history[-1].get('loss', float('nan')):.4f}, "
        f"{generator.meta.get('train_seconds', 0):.0f} s)"
    )


@generate_app.command("sample")
def sample_command(
    model: Path = typer.Argument(..., help="A saved generator folder (from `tessera generate fit`)."),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="What to draw or say (repeatable)."),
    n: int = typer.Option(8, help="Samples per prompt."),
    out: Path = typer.Option(Path("generated.png"), help="Images: one PNG grid. Speech: a WAV (NAME_i.wav when several)."),
    guidance: float = typer.Option(3.0, help="Classifier-free guidance scale (1: none, 0: unconditional)."),
    steps: int = typer.Option(50, help="Sampling steps."),
    seed: int = typer.Option(0, help="Seed of the starting noise: same seed, same samples."),
    sampler: str = typer.Option("ddim", help="ddim or dpm (DPM-Solver++)."),
    speaker: Optional[str] = typer.Option(None, help="Speech models trained with speakers: whose voice."),
) -> None:
    """Sample from a saved generator: a PNG grid of images, or WAV files of speech."""
    from tessera.generate.diffusion import DiffusionGenerator, image_grid
    from tessera.files import atomic_path

    generator = DiffusionGenerator.load(model)
    options = {"guidance": guidance, "steps": steps, "seed": seed, "sampler": sampler}
    if generator.meta.get("task") == "text2speech":
        import soundfile as sf

        from tessera.generate.speech import SAMPLE_RATE, speak

        waves = speak(generator, prompt, n, speaker=speaker, **options)
        paths = [out] if len(waves) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.wav'}") for i in range(len(waves))]
        for path, wave in zip(paths, waves):
            with atomic_path(path) as tmp:
                sf.write(tmp, wave, SAMPLE_RATE, format="WAV")
        console.print(f"wrote {len(paths)} WAV file(s): {paths[0]}" + (f" ... {paths[-1]}" if len(paths) > 1 else ""))
        return
    if speaker is not None:
        raise SchemaError("--speaker is for text-to-speech models; this one draws images")
    images = generator.generate(prompt, n, **options)
    with atomic_path(out) as tmp:
        image_grid(images, columns=n).save(tmp, format="PNG")
    console.print(f"wrote a grid of {len(images)} image(s) ({len(prompt)} prompt(s) x {n}) to {out}")
