"""A one-pass log-mel decoder for text-to-speech: word embedding (+ speaker) in, a 64x64 log-mel image out.

Why not diffusion: FSDD has ten words, and what Griffin-Lim plus a listener (Whisper) read
best is a clean, average-like spectrogram of the word, not one plausible take with its
noise. A small network that maps the frozen sentence embedding of the prompt ("seven",
"say seven", ...) straight to the spectrogram, trained with L1 against every real take of
the word, learns exactly that (L1's optimum is the per-bin median of the takes). It samples
in one forward pass, so generation costs little more than the vocoder.

The speaker is a learned offset per mel band (a ``(n_speakers, 64)`` table added to every
frame of the output), not an input of the network: the word's shape comes from the text
alone and the speaker only tilts its spectrum. That is what lets word and speaker compose for
(speaker, word) pairs never heard together in training
(:func:`tessera.generate.speech.heldout_pairs`), and also why the speaker effect is weak: a
band offset cannot change a speaker's timing or pitch, and under L1 the many silent frames
pull it towards zero (``benchmarks/text2speech.py`` measures how often a generated clip is
nearest its own speaker's real spectrogram: about chance). :class:`DecoderSettings` has two
stronger speaker conditions, measured to make the words harder to understand. Without a
speaker, the mean of the speakers' offsets is used.

The decoder is deterministic: ``n`` samples of one prompt are the same spectrogram (Griffin-Lim's
random starting phase is the only variation left in the audio).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import tessera
from tessera.errors import TesseraError
from tessera.files import atomic_dir
from tessera.generate.diffusion import (
    META_FILE,
    EpochLog,
    TextConditioner,
    TrainData,
    _lr_factor,
    _log,
    _Settings,
    check_prompts,
    check_sample_count,
    condition_vectors,
    label_indices,
    parse_settings,
    read_saved,
)
from tessera.progress import progress_bar

FORMAT = "tessera.speech_decoder/1"
WEIGHTS_FILE = "decoder.pt"


class DecoderSettings(_Settings):
    """The decoder: an MLP from the text vector to the whole log-mel image (``hidden``: its hidden widths)."""

    hidden: tuple[int, ...] = Field((512, 512), min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    # The per-mel-band offset per speaker: "all" adds it to every bin; "voiced" scales it by how loud the word's
    # own bin is (0 at silence, 1 at the loudest); "off" ignores it. Measured on FSDD's held-out pairs (one seed
    # each, 36 clips): "voiced" matched the speakers' real spectrograms a little better (L1) but Whisper read it
    # worse (0.64-0.72 vs 0.83-0.86 for "all").
    speaker_offsets: Literal["all", "voiced", "off"] = "all"
    # Also give the MLP the speaker (one-hot, appended to the text vector): it can then change the word's shape
    # per speaker. Measured likewise: closer to the held-out speaker's real spectrograms (L1 0.103 vs 0.134),
    # but Whisper read it far worse (0.42-0.61): on pairs never seen together the word blurs.
    speaker_input: bool = False


class DecoderTrainSettings(_Settings):
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0


class MelDecoder(nn.Module):
    """Text vector -> ``(1, n_mels, frames)`` log-mel image, plus a per-speaker offset per mel band."""

    def __init__(self, settings: DecoderSettings, text_dim: int, n_speakers: int, n_mels: int, frames: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.n_speaker_inputs = n_speakers if settings.speaker_input else 0
        width = text_dim + self.n_speaker_inputs
        for h in settings.hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(settings.dropout)]
            width = h
        layers.append(nn.Linear(width, n_mels * frames))
        self.body = nn.Sequential(*layers)
        self.n_mels, self.frames = n_mels, frames
        self.gated = settings.speaker_offsets == "voiced"
        self.speaker = nn.Embedding(n_speakers, n_mels) if n_speakers and settings.speaker_offsets != "off" else None
        self.n_speakers = n_speakers
        if self.speaker is not None:
            nn.init.zeros_(self.speaker.weight)  # start as "every speaker alike"; the data moves them apart

    def forward(self, text: Tensor, speakers: Tensor | None = None) -> Tensor:
        """``speakers``: one index per row, ``-1`` for none (the mean offset); ignored without speaker offsets."""
        text = condition_vectors(text, speakers, self.n_speaker_inputs)  # the one-hot speaker, when it is an input
        out = self.body(text).view(len(text), 1, self.n_mels, self.frames)
        if self.speaker is None or speakers is None:
            return out
        table = self.speaker.weight
        offsets = torch.where((speakers >= 0).unsqueeze(1), table[speakers.clamp_min(0)], table.mean(0, keepdim=True))
        offsets = offsets[:, None, :, None]
        if self.gated:  # the word's loudness decides where its speaker shows; detached: the word is the text's alone
            offsets = offsets * ((out.detach() + 1.0) / 2.0).clamp(0.0, 1.0)
        return out + offsets


def train_decoder(
    data: TrainData,
    text: TextConditioner,
    settings: DecoderSettings,
    train: DecoderTrainSettings,
    *,
    log: Callable[[str], None] | None = None,
) -> "SpeechDecoder":
    """Fit a :class:`MelDecoder` with L1 to the samples of each (prompt, speaker) draw; AdamW, warmup + cosine.

    Batches are drawn like :func:`tessera.generate.diffusion.train_denoiser`'s (uniform over
    ``data.pairs``); one log line per epoch when no progress bar is drawn.
    """
    log = log or _log
    if data.samples.shape[1] != 1:
        raise TesseraError(f"the speech decoder draws one-channel log-mel images, got {data.samples.shape[1]} channels")
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)
    started = time.perf_counter()
    prompt_vectors = text(data.prompts)  # each distinct prompt once, frozen
    _, _, n_mels, frames = data.samples.shape
    net = MelDecoder(settings, text.dim, len(data.label_names), n_mels, frames)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, train.warmup, train.steps))
    epochs = EpochLog(train.steps, max(1, len(data.samples) // train.batch_size), started, log)
    net.train()
    with progress_bar("speech decoder", train.steps) as advance:
        for step in range(train.steps):
            pick = data.pairs[torch.randint(len(data.pairs), (train.batch_size,), generator=gen)]
            speakers = data.labels[pick[:, 0]] if data.labels is not None else None
            loss = F.l1_loss(net(prompt_vectors[pick[:, 1]], speakers), data.samples[pick[:, 0]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            advance(1, loss=loss.item())
            epochs.step(step, loss.item())
    net.eval()
    return SpeechDecoder(
        net=net, settings=settings, text=text, shape=(1, n_mels, frames), label_names=list(data.label_names),
        meta={"train": train.model_dump(), "history": epochs.history, "train_seconds": time.perf_counter() - started,
              "data_shape": list(data.samples.shape[1:])},
    )


class SpeechDecoder:
    """A trained one-pass decoder: prompts (and speakers) in, log-mel images in [-1, 1] out.

    It answers :meth:`sample` like :class:`~tessera.generate.diffusion.DiffusionGenerator`, so
    :func:`tessera.generate.speech.speak`, ``tessera generate`` and the server use either.
    """

    def __init__(
        self,
        *,
        net: MelDecoder,
        settings: DecoderSettings,
        text: TextConditioner,
        shape: tuple[int, int, int],
        label_names: list[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.net = net.eval()
        self.settings = settings
        self.text = text
        self.shape = tuple(shape)
        speakers_used = settings.speaker_offsets != "off" or settings.speaker_input
        self.label_names = list(label_names or []) if speakers_used else []
        self.meta = dict(meta or {})

    @torch.no_grad()
    def sample(
        self,
        prompts: str | Sequence[str],
        n: int = 1,
        *,
        labels: str | Sequence[str] | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        seed: int | None = None,
        sampler: str | None = None,
        progress: bool = False,
        batch_size: int = 256,
    ) -> Tensor:
        """``n`` log-mel images per prompt, ``(len(prompts) * n, *shape)`` in [-1, 1], prompt-major.

        ``labels``: one speaker for all prompts or one per prompt. ``guidance``, ``steps``,
        ``seed``, ``sampler`` and ``progress`` are the diffusion sampler's options, accepted so
        callers can treat both kinds alike; one forward pass has none of them, so they change nothing.
        """
        prompts = check_prompts(prompts)
        check_sample_count(len(prompts), n)
        speakers = label_indices(self.label_names, labels, len(prompts))
        vectors = self.text(prompts)
        parts = [self.net(vectors[i : i + batch_size], None if speakers is None else speakers[i : i + batch_size])
                 for i in range(0, len(prompts), batch_size)]
        return torch.cat(parts).clamp(-1.0, 1.0).repeat_interleave(n, dim=0)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """One folder (``generator.json`` + weights), written under a temporary name and swapped in whole."""
        meta = {
            "format": FORMAT,
            "tessera_version": tessera.__version__,
            "decoder": self.settings.model_dump(mode="json"),
            "text_encoder": self.text.spec,
            "text_dim": self.text.dim,
            "shape": list(self.shape),
            "label_names": self.label_names,
            "n_speakers": self.net.n_speakers,
            "meta": self.meta,
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            torch.save(self.net.state_dict(), tmp / WEIGHTS_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, text: TextConditioner | None = None) -> "SpeechDecoder":
        """Load a saved decoder; ``text`` reuses an already loaded text encoder (it must be the same one)."""
        path = Path(path)
        meta, text = read_saved(path, "speech decoder", FORMAT, WEIGHTS_FILE, text)
        settings = parse_settings(DecoderSettings, meta["decoder"], str(path / META_FILE))
        _, n_mels, frames = meta["shape"]
        net = MelDecoder(settings, meta["text_dim"], int(meta["n_speakers"]), n_mels, frames)
        net.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return cls(net=net, settings=settings, text=text, shape=tuple(meta["shape"]), label_names=meta["label_names"],
                   meta=meta["meta"])
