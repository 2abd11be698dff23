"""`tessera generate`: fit a generator from a config, run or sample a saved one, evaluate one.

Two families share the command group:

* text out (captions, answers, transcripts; the LLaVA pattern, :mod:`tessera.generate.generator`)::

    tessera generate fit configs/generate/caption_flickr.yaml
    tessera generate runs/caption_flickr --image photo.jpg --prompt "What is in this picture?"
    tessera generate whisper-tiny.en --audio clip.wav          # the packaged transcriber
    tessera generate gguf:gemma3-270m --prompt "What is the capital of France?"   # any LM, text only
    tessera generate evaluate runs/caption_flickr photos.csv --split test --report report.json

* images and speech out (diffusion, :mod:`tessera.generate.diffusion`; speech by default with the
  one-pass decoder of :mod:`tessera.generate.speech_decoder`)::

    tessera generate fit configs/generate/text2image_fashion.yaml
    tessera generate runs/text2image_fashion --prompt "a pair of summer sandals" --n 8 --out grid.png
    tessera generate fit configs/generate/text2speech_fsdd.yaml
    tessera generate runs/text2speech_fsdd --prompt seven --speaker george --n 1 --out seven.wav

A config says which with ``task:`` (``text2image``, ``text2speech`` or ``text``; without it,
a config with an ``lm``, ``encoder`` or ``projector`` section is a text generator and any
other is text-to-image). A first word that is not one of the group's commands is a MODEL:
a saved diffusion model or speech decoder (its folder holds their weights) goes to ``sample``,
anything else to ``run``. This module lives outside ``tessera.generate`` so that
registering the commands does not import that package (transformers and all: ~5 s on every
``tessera`` call); the commands import what they need when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from tessera.errors import SchemaError

console = Console()
WHISPER = "whisper-tiny.en"  # the packaged transcriber (tessera.transcribe)
DIFFUSION_TASKS = ("text2image", "text2speech")
TEXT_SECTIONS = ("lm", "encoder", "projector")  # sections only a text generator's config has
SAMPLE_ONLY = ("--n", "--out", "--guidance", "--steps", "--sampler", "--speaker")  # so a model not yet trained gets "not found", not "no such option"
DENOISER_FILE = "denoiser.pt"  # tessera.generate.diffusion.WEIGHTS_FILE, named here to keep imports lazy
DECODER_FILE = "decoder.pt"  # tessera.generate.speech_decoder.WEIGHTS_FILE (the one-pass speech decoder), likewise


class ModelOrCommand(TyperGroup):
    """A group whose unknown first word is a model: ``sample`` for a diffusion model or speech decoder, ``run`` otherwise."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            diffusion = any((Path(args[0]) / f).is_file() for f in (DENOISER_FILE, DECODER_FILE)) or any(a.split("=")[0] in SAMPLE_ONLY for a in args)
            args = ["sample" if diffusion else "run", *args]
        return super().parse_args(ctx, args)


generate_app = typer.Typer(
    cls=ModelOrCommand,
    help="Generate text from images, sound or text, or images and speech from text: "
    "`generate fit CONFIG`, then `generate MODEL --image/--audio/--prompt`.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")


def config_task(path: Path) -> str:
    """``text``, ``text2image`` or ``text2speech``: what a generation config trains."""
    from tessera.files import read_yaml

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: expected a mapping (a generation config)")
    task = raw.get("task")
    if task is None:
        return "text" if any(k in raw for k in TEXT_SECTIONS) else "text2image"
    if task not in ("text", *DIFFUSION_TASKS):
        raise SchemaError(f"{path}: task must be text, text2image or text2speech, got {task!r}")
    return task


def load_any_config(path: Path) -> Any:
    """A diffusion config (``task: text2image`` or ``text2speech``) and the module that trains it."""
    from tessera.files import read_yaml

    raw = read_yaml(path)
    task = config_task(path)
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
    config: Path = typer.Argument(..., help="A generator config (see configs/generate/)."),
    output: Optional[Path] = typer.Option(None, help="Where to save the generator (default: the config's output)."),
) -> None:
    """Train a generator (text: LLaVA's two stages or a decoder from scratch; images, speech: diffusion) and save it."""
    if config_task(config) == "text":
        fit_text(config, output)
        return
    module, cfg = load_any_config(config)
    generator, out = module.run(cfg, output)
    history = generator.meta.get("history") or [{}]
    console.print(
        f"saved {cfg.task} generator to [bold]{out}[/bold] (final loss {history[-1].get('loss', float('nan')):.4f}, "
        f"{generator.meta.get('train_seconds', 0):.0f} s)"
    )


def fit_text(config: Path, output: Path | None) -> None:
    from tessera.generate.config import load_config
    from tessera.generate.generator import Generator

    cfg, configured = load_config(config)
    out = output or configured
    if out is None:
        raise SchemaError(f"{config}: say where to save the generator: 'output: FOLDER' in the config, or --output")
    generator = Generator.fit(None, cfg)
    generator.save(out)
    for record in generator.history:
        console.print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    console.print(f"saved generator to [bold]{out}[/bold]")


@generate_app.command("run")
def run_command(
    model: str = typer.Argument(
        ..., help=f"A saved generator folder, {WHISPER}, or a language model (hub id, folder, gguf:NAME)."
    ),
    image: Optional[Path] = typer.Option(None, help="An image to describe or ask about."),
    audio: Optional[Path] = typer.Option(None, help="A sound to transcribe or describe."),
    prompt: Optional[str] = typer.Option(
        None, help="The question or instruction (default: the generator's own prompt)."
    ),
    max_new_tokens: int = typer.Option(64, help="Stop after this many tokens."),
    sample: bool = typer.Option(False, help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, help="With --sample: the softmax temperature."),
    top_p: float = typer.Option(1.0, help="With --sample: nucleus sampling's probability mass."),
    seed: Optional[int] = typer.Option(None, help="With --sample: a seed, for the same reply each time."),
    num_beams: int = typer.Option(
        1, help="1: greedy (streamed); more: beam search with that many beams (printed whole at the end)."
    ),
) -> None:
    """Generate text about one image or sound (or from a prompt alone), streamed as it is written.

    With --num-beams above 1 the reply is the likeliest beam search finds, printed when it is done:
    beam search knows its best reply only at the end, so it cannot stream.
    """
    if image is not None and audio is not None:
        raise SchemaError("give --image or --audio, not both: a generator reads one input")
    media = image or audio
    if media is not None and not media.is_file():
        raise SchemaError(f"{'--image' if image else '--audio'}: no such file: {media}")
    if model == WHISPER:
        pieces = _transcribe(audio, image, prompt)
    else:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        if num_beams < 1:
            raise SchemaError(f"--num-beams must be >= 1 (1: greedy), got {num_beams}")
        if num_beams > 1 and sample:
            raise SchemaError("--num-beams above 1 is beam search, which does not sample: drop --sample")
        options = {"max_new_tokens": max_new_tokens, "do_sample": sample, "temperature": temperature, "top_p": top_p}
        options |= {"num_beams": num_beams} if num_beams > 1 else {}
        pieces = _generate(model, image, audio, prompt, options)
    for piece in pieces:
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()


def _transcribe(audio: Path | None, image: Path | None, prompt: str | None) -> Iterator[str]:
    if audio is None or image is not None or prompt is not None:
        raise SchemaError(f"{WHISPER} transcribes speech: give --audio FILE, and no --image or --prompt")
    from tessera.media import resolve_media
    from tessera.preprocess.audio import decode_audio
    from tessera.transcribe import transcript_segments

    wave, rate = decode_audio(resolve_media(str(audio)))
    return transcript_segments(wave, rate)


def _generate(model: str, image: Path | None, audio: Path | None, prompt: str | None, options: dict) -> Iterator[str]:
    from transformers.utils import logging as hf_logging

    from tessera.generate.generator import META_FILE, Generator

    hf_logging.disable_progress_bar()  # the reply is the output; no weight-loading bars around it

    if (Path(model) / META_FILE).is_file():
        generator = Generator.load(model)
        wanted = generator.modality
        given = "image" if image is not None else "audio" if audio is not None else None
        if given != wanted:
            flag = f"--{wanted}" if wanted in ("image", "audio") else f"a {wanted} input"
            raise SchemaError(f"{model} reads {wanted}: give {flag} FILE" + (f", not --{given}" if given else ""))
        if options.get("num_beams", 1) > 1:  # beam search: one whole reply
            return iter(generator.generate([str(image or audio)], prompt, **options))
        return generator.stream(str(image or audio), prompt, **options)
    if image is not None or audio is not None:
        raise SchemaError(
            f"{model} is not a saved generator folder (no {META_FILE}); a plain language model reads text only: "
            "drop --image/--audio, or fit a generator first (tessera generate fit CONFIG)"
        )
    if not prompt:
        raise SchemaError("a language model needs --prompt TEXT")
    messages = [{"role": "user", "content": prompt}]
    if options.get("num_beams", 1) > 1:  # beam search: one whole reply
        return iter(Generator.from_lm(model).model.generate(None, [messages], **options))
    return Generator.from_lm(model).stream(None, messages, **options)


@generate_app.command("evaluate")
def evaluate_command(
    model: Path = typer.Argument(..., help="A saved generator folder."),
    table: Path = typer.Argument(..., help="A table with the generator's input and text columns."),
    split: Optional[str] = typer.Option(None, help="Only rows of this split (the config's split column), e.g. test."),
    agreement: Optional[Path] = typer.Option(
        None, help="A saved aligned space (image + text) for caption-image agreement."
    ),
    report: Optional[Path] = typer.Option(None, help="Write the results JSON here and the HTML report beside it."),
    max_new_tokens: int = typer.Option(32, help="Longest generated text."),
) -> None:
    """Generate for every distinct input of a table and score against its texts: CIDEr, BLEU-4 (and agreement)."""
    from tessera.evaluate.report import write_report
    from tessera.generate.agreement import CaptionAgreement
    from tessera.generate.evaluate import evaluate_generator
    from tessera.generate.generator import Generator

    generator = Generator.load(model)
    space = None if agreement is None else CaptionAgreement.load(agreement)
    results, _ = evaluate_generator(
        generator, table, split=split, agreement=space, max_new_tokens=max_new_tokens, model_name=str(model)
    )
    for name, m in results["summary"].items():
        if isinstance(m, dict):
            console.print(f"{name}: {m['value']:.4f} (95% CI {m['low']:.4f} to {m['high']:.4f})")
    console.print(f"on {results['meta']['n']} distinct inputs")
    if report is not None:
        json_path, html_path = write_report(results, report)
        console.print(f"wrote {json_path} and {html_path}")


@generate_app.command("sample")
def sample_command(
    model: Path = typer.Argument(..., help="A saved generator folder (from `tessera generate fit`)."),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="What to draw or say (repeatable)."),
    n: int = typer.Option(8, help="Samples per prompt."),
    out: Path = typer.Option(Path("generated.png"), help="Images: one PNG grid. Speech: a WAV (NAME_i.wav when several)."),
    guidance: Optional[float] = typer.Option(None, help="Classifier-free guidance scale (1: none, 0: unconditional; "
                                             "default: the generator's own, from its config)."),
    steps: int = typer.Option(50, help="Sampling steps."),
    seed: int = typer.Option(0, help="Seed of the starting noise: same seed, same samples."),
    sampler: str = typer.Option("ddim", help="ddim or dpm (DPM-Solver++)."),
    speaker: Optional[str] = typer.Option(None, help="Speech models trained with speakers: whose voice."),
) -> None:
    """Sample from a saved generator: a PNG grid of images, or WAV files of speech (diffusion or one-pass decoder)."""
    from tessera.generate.diffusion import image_grid
    from tessera.generate.speech import load_generator
    from tessera.files import atomic_path

    generator = load_generator(model)
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
