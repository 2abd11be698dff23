"""Pretrained encoders, loaded through the libraries that own the checkpoint formats.

``transformers`` reads Hugging Face checkpoints (a hub id, or a local directory from
``save_pretrained``), ``sentence-transformers`` reads its own pipelines, and ``peft`` adds
LoRA adapters. Tessera only feeds them its preprocessed batches, so each family needs the
matching preprocessing options in the schema:

* ``hf_text`` / ``sentence_transformer``: a text input with ``tokenizer: pretrained`` and
  ``pretrained: <the same model>``, so ids mean what the model learnt. ``max_length`` must
  fit the model's positions (512 for BERT, 77 for CLIP; SigLIP was trained on 64).
* ``hf_vision``: an image input whose ``size``, ``resize``, ``mean`` and ``std`` reproduce
  the checkpoint's own image processor; :func:`image_options_for` reads them.
* ``hf_audio`` (Whisper): an audio input with ``sample_rate: 16000, n_fft: 400,
  hop_length: 160, n_mels: 80`` (128 for large-v3), ``max_seconds: 30, frames: 3000``
  and ``normalize: none``; :func:`audio_options_for` returns them. wav2vec2/HuBERT-style
  models need the raw waveform, which the audio preprocessor does not produce, so they
  are refused with a :class:`SchemaError`.

``finetune`` picks what trains: ``frozen`` (the backbone stays in eval mode and runs
without autograd; only what Tessera puts on top learns), ``full`` (every weight), or
``lora`` (low-rank adapters on the attention query/value projections; nothing else in
the backbone).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn

from tessera.encoders.base import Encoder, masked_mean, register_encoder, zero_absent
from tessera.errors import SchemaError
from tessera.progress import quiet_libraries

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

FINETUNE_CHOICES = ("frozen", "full", "lora")
# "pooler" is the model's own summary (CLIP: end-of-text token; SigLIP: its pooling head).
POOLING_CHOICES = ("tokens", "mean", "cls", "pooler")
# Towers whose first token summarises nothing: CLIP text is causal, so token 0 only sees
# itself; SigLIP has no class token at all.
NO_CLS_TOKEN = ("clip_text_model", "siglip_text_model", "siglip_vision_model")
# Attention query/value projections under the names each family gives them:
# BERT/RoBERTa/ViT, CLIP/SigLIP/Whisper, DistilBERT, DeBERTa.
LORA_TARGETS = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("query_proj", "value_proj"))
# Whisper's feature extractor is fixed across checkpoints; only the mel count varies.
WHISPER_SAMPLE_RATE, WHISPER_N_FFT, WHISPER_HOP = 16000, 400, 160

_T = TypeVar("_T")


# -- loading ------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report: loading one tower of a CLIP/SigLIP checkpoint lists
    every weight of the other tower as "unexpected", which reads like an error but is not.
    Weights that are really missing are reported by :func:`_from_pretrained` instead.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load(what: str, name: str, loader: Callable[[str], _T]) -> _T:
    """Run a library loader; its many failure types become one SchemaError saying where it looked."""
    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and (path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1):
        raise SchemaError(f"cannot load {what}: local directory {str(path)!r} does not exist")
    where = f"local directory {str(path)!r}" if local else f"Hugging Face hub id {name!r}"
    try:
        with _quiet_transformers(), quiet_libraries():  # their "Loading weights" bar too, unless Tessera shows bars
            return loader(str(path) if local else name)
    except SchemaError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, HFValidationError, KeyError ...
        hint = ""
        if not local and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            hint = (
                " (HF_HUB_OFFLINE=1: the hub is offline, so only the local cache was searched; "
                "pass a local directory, or download the model where there is a network)"
            )
        raise SchemaError(f"cannot load {what} from {where}{hint}: {type(e).__name__}: {e}") from e


def _from_pretrained(cls: Any, name: str) -> nn.Module:
    """``cls.from_pretrained`` in float32, warning when weights were freshly initialised:
    a checkpoint of another architecture loads "successfully" with random weights otherwise.
    """
    model, info = cls.from_pretrained(name, output_loading_info=True)
    missing = list(info.get("missing_keys", []))
    if missing:
        warnings.warn(
            f"{len(missing)} weight(s) of {type(model).__name__} are not in checkpoint {name!r} and start random "
            f"(e.g. {missing[:3]}); is this the right checkpoint for this encoder?",
            stacklevel=3,
        )
    return model.float()


def _config(name: str) -> Any:
    from transformers import AutoConfig

    return _load("a model config", name, AutoConfig.from_pretrained)


def _tower(name: str, towers: dict[str, str], what: str) -> nn.Module:
    """Load ``name``; for dual-tower checkpoints (CLIP, SigLIP) only the tower this modality needs."""
    import transformers

    config = _config(name)
    cls = getattr(transformers, towers.get(config.model_type, "AutoModel"))
    return _load(f"a {what} model", name, lambda n: _from_pretrained(cls, n))


# -- finetuning ---------------------------------------------------------------------------
def _lora_targets(backbone: nn.Module) -> list[str]:
    linear = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
    for pair in LORA_TARGETS:
        if set(pair) <= linear:
            return list(pair)
    raise SchemaError(
        f"finetune 'lora' found no attention projections to adapt (looked for {[list(p) for p in LORA_TARGETS]}); "
        "use finetune 'full' or 'frozen' for this model"
    )


def _set_trainable(backbone: nn.Module, finetune: str, lora_r: int, lora_alpha: int) -> None:
    """Decide which backbone weights learn.

    LoRA is injected in place (``peft.inject_adapter_in_model``) rather than wrapped with
    ``get_peft_model``: the backbone keeps its class and forward signature, which the
    sentence-transformers pipeline (not a ``PreTrainedModel``) and the callers here rely on.
    """
    if finetune not in FINETUNE_CHOICES:
        raise SchemaError(f"finetune must be one of {FINETUNE_CHOICES}, got {finetune!r}")
    if finetune == "full":
        return
    backbone.requires_grad_(False)
    if finetune == "lora":
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as e:
            raise SchemaError("finetune 'lora' needs the peft package: pip install peft") from e
        if lora_r < 1:
            raise SchemaError(f"lora_r must be a positive integer, got {lora_r!r}")
        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=_lora_targets(backbone))
        inject_adapter_in_model(config, backbone)


class PretrainedEncoder(Encoder):
    """What every pretrained family shares: finetune mode, optional projection, pooling."""

    backbone: nn.Module
    finetune: str
    pooling: str

    def _setup(
        self,
        backbone: nn.Module,
        hidden: int,
        dim: int | None,
        finetune: str,
        lora_r: int,
        lora_alpha: int,
        pooling: str,
        allowed: tuple[str, ...] = POOLING_CHOICES,
    ) -> None:
        if pooling not in allowed:
            raise SchemaError(f"pooling must be one of {allowed} for {self.encoder_name}, got {pooling!r}")
        model_type = getattr(getattr(backbone, "config", None), "model_type", "")
        if pooling == "cls" and model_type in NO_CLS_TOKEN:
            raise SchemaError(f"pooling 'cls' means nothing for {model_type} (no class token); use 'pooler' or 'mean'")
        _set_trainable(backbone, finetune, lora_r, lora_alpha)
        self.backbone = backbone
        self.finetune = finetune
        self.pooling = pooling
        self.proj: nn.Module = nn.Linear(hidden, dim) if dim else nn.Identity()
        self.output_dim = dim or hidden

    def train(self, mode: bool = True) -> PretrainedEncoder:
        """A frozen backbone stays in eval mode: dropout noise would only blur fixed features."""
        super().train(mode)
        if self.finetune == "frozen":
            self.backbone.eval()
        return self

    def _grad(self) -> contextlib.AbstractContextManager:
        """No autograd through a frozen backbone: nothing there learns, so its activations need not be kept."""
        return torch.no_grad() if self.finetune == "frozen" else contextlib.nullcontext()

    def _pool(self, out: Any, mask: Tensor, present: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.pooling == "tokens":
            tokens = self.proj(out.last_hidden_state)
            return tokens.masked_fill(~mask.unsqueeze(-1), 0.0), mask
        if self.pooling == "mean":
            vec = masked_mean(out.last_hidden_state, mask)
        elif self.pooling == "cls":
            vec = out.last_hidden_state[:, 0]
        else:
            vec = getattr(out, "pooler_output", None)
            if vec is None:
                raise SchemaError(f"{type(self.backbone).__name__} has no pooler output; use pooling 'mean' or 'cls'")
        return zero_absent(self.proj(vec), present), None


# -- text -----------------------------------------------------------------------------------
def _token_mask(batch: ModalityBatch) -> tuple[Tensor, Tensor]:
    """The valid-token mask, and the attention mask actually fed to the model.

    Absent samples have no valid token; attention over nothing can give NaN, so those rows
    attend to their first token and are zeroed afterwards.
    """
    ids = batch.data
    mask = batch.mask if batch.mask is not None else torch.ones_like(ids, dtype=torch.bool)
    mask = mask & batch.present.unsqueeze(1)
    attend = mask.clone()
    attend[:, 0] |= ~mask.any(dim=1)
    return mask, attend.long()


def _check_text_fits(backbone: nn.Module, name: str, vocab_size: int | None, max_length: int | None) -> None:
    """Fail at build time, not with an index error mid-training, when the tokenizer does not fit the model."""
    rows = backbone.get_input_embeddings().num_embeddings
    if vocab_size is not None and vocab_size > rows:
        raise SchemaError(
            f"the text input's tokenizer has {vocab_size} tokens but {name!r} embeds only {rows}; "
            f"set the text options tokenizer: pretrained, pretrained: {name}"
        )
    positions = getattr(backbone.config, "max_position_embeddings", None)
    if max_length is not None and positions is not None and max_length > positions:
        raise SchemaError(
            f"text max_length {max_length} exceeds the {positions} positions of {name!r}; lower max_length"
        )


@register_encoder("hf_text")
class HFTextEncoder(PretrainedEncoder):
    """A Hugging Face text model (BERT-like, or the text tower of CLIP/SigLIP) over Tessera's token ids.

    ``vocab_size`` and ``max_length`` are filled in from the text input and only checked.
    """

    def __init__(
        self,
        model: str,
        dim: int | None = None,
        finetune: str = "frozen",
        lora_r: int = 8,
        lora_alpha: int = 16,
        pooling: str = "tokens",
        vocab_size: int | None = None,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        backbone = _tower(model, {"clip": "CLIPTextModel", "siglip": "SiglipTextModel"}, "text")
        _check_text_fits(backbone, model, vocab_size, max_length)
        self._setup(backbone, backbone.config.hidden_size, dim, finetune, lora_r, lora_alpha, pooling)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        mask, attend = _token_mask(batch)
        with self._grad():
            out = self.backbone(input_ids=batch.data, attention_mask=attend)
        return self._pool(out, mask, batch.present)


@register_encoder("sentence_transformer")
class SentenceTransformerEncoder(PretrainedEncoder):
    """A sentence-transformers pipeline (transformer, pooling, dense, normalize ...) run on Tessera's ids.

    The whole pipeline runs, so the vectors are the ones ``SentenceTransformer.encode`` gives
    for the same text, provided the text input tokenises with the same model's tokenizer.
    """

    def __init__(
        self,
        model: str,
        finetune: str = "frozen",
        lora_r: int = 8,
        lora_alpha: int = 16,
        vocab_size: int | None = None,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise SchemaError("encoder 'sentence_transformer' needs: pip install sentence-transformers") from e
        st = _load("a sentence-transformers model", model, lambda n: SentenceTransformer(n, device="cpu")).float()
        # sentence-transformers >= 5 names the wrapped transformers model ``model``, older ``auto_model``.
        inner = getattr(st[0], "model", None)
        inner = inner if isinstance(inner, nn.Module) else getattr(st[0], "auto_model", None)
        if isinstance(inner, nn.Module) and hasattr(inner, "get_input_embeddings"):
            _check_text_fits(inner, model, vocab_size, max_length)
        size_of = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        hidden = size_of()
        if not hidden:
            raise SchemaError(f"sentence-transformers model {model!r} does not say its embedding size")
        # No projection and no pooling choice: the pipeline's own pooling is what makes it a sentence model.
        self._setup(st, int(hidden), None, finetune, lora_r, lora_alpha, "pooler")
        self.model_name = model

    @property
    def frozen(self) -> bool:
        return self.finetune == "frozen"

    def cache_key(self) -> dict[str, Any]:
        """The model (a local folder by its files' names, sizes and times; else the hub id) and the library versions."""
        import importlib.metadata

        path = Path(self.model_name).expanduser()
        files = (
            sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in path.rglob("*") if f.is_file())
            if path.is_dir() else []
        )
        return {
            "encoder": self.encoder_name,
            "model": str(path.resolve()) if path.is_dir() else self.model_name,
            "files": files,
            "packages": {d: importlib.metadata.version(d) for d in ("sentence-transformers", "transformers", "torch")},
        }

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, None]:
        _, attend = _token_mask(batch)
        # Texts are padded to max_length; columns no row attends to change nothing in a pooled
        # output but cost compute (a 6-word query padded to 128 tokens is ~10x the work).
        used = int(attend.any(dim=0).nonzero().max()) + 1
        with self._grad():
            out = self.backbone({"input_ids": batch.data[:, :used], "attention_mask": attend[:, :used]})["sentence_embedding"]
        return zero_absent(out, batch.present), None


# -- vision ---------------------------------------------------------------------------------
@register_encoder("hf_vision")
class HFVisionEncoder(PretrainedEncoder):
    """A Hugging Face vision model (ViT-like, or the vision tower of CLIP/SigLIP) over Tessera's images.

    ``image_size`` and ``in_channels`` are filled in from the image input and only checked:
    position embeddings fix the size a checkpoint accepts.
    """

    def __init__(
        self,
        model: str,
        dim: int | None = None,
        finetune: str = "frozen",
        lora_r: int = 8,
        lora_alpha: int = 16,
        pooling: str = "tokens",
        image_size: int | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        backbone = _tower(model, {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}, "vision")
        config = backbone.config
        expected = (getattr(config, "image_size", None), getattr(config, "num_channels", 3))
        if (image_size is not None and expected[0] and image_size != expected[0]) or (
            in_channels is not None and in_channels != expected[1]
        ):
            raise SchemaError(
                f"{model!r} takes {expected[1]}x{expected[0]}x{expected[0]} images but the image input gives "
                f"{in_channels}x{image_size}x{image_size}; set the image options to "
                f"tessera.encoders.pretrained.image_options_for({model!r})"
            )
        self._setup(backbone, config.hidden_size, dim, finetune, lora_r, lora_alpha, pooling)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        with self._grad():
            out = self.backbone(pixel_values=batch.data)
        b, t = out.last_hidden_state.shape[:2]
        mask = batch.present.unsqueeze(1).expand(b, t)
        return self._pool(out, mask, batch.present)


def _preprocessor_config(model: str) -> dict[str, Any] | None:
    """The checkpoint's ``preprocessor_config.json``, or None when it has none."""
    path = Path(model).expanduser()
    if path.is_dir():
        file = path / "preprocessor_config.json"
        return json.loads(file.read_text()) if file.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(model, "preprocessor_config.json")).read_text())
    except Exception:  # noqa: BLE001 - absent file, or not in the offline cache: fall back to the model config
        return None


def _square(value: Any, model: str) -> int:
    if isinstance(value, int):
        return value
    if "shortest_edge" in value:
        return int(value["shortest_edge"])
    if value.get("height") != value.get("width"):
        raise SchemaError(f"{model!r} expects {value['height']}x{value['width']} images; Tessera's images are square")
    return int(value["height"])


def image_options_for(model: str) -> dict[str, Any]:
    """Image input options that reproduce a checkpoint's own image processor: ``{size, resize, mean, std}``.

    Read from ``preprocessor_config.json``; a processor that centre-crops (CLIP) maps to
    ``resize: crop``, one that resizes to a fixed square (ViT, SigLIP) to ``resize: stretch``.
    Without that file the size comes from the model config and mean/std are the family's
    processor defaults in ``transformers``. Pillow resampling here is bilinear, where some
    processors use bicubic: pixels differ slightly, features barely.
    """
    pre = _preprocessor_config(model)
    if pre is not None:
        crop = pre.get("do_center_crop") and pre.get("crop_size")
        return {
            "size": _square(crop or pre["size"], model),
            "resize": "crop" if crop else "stretch",
            "mean": [float(m) for m in pre["image_mean"]],
            "std": [float(s) for s in pre["image_std"]],
        }
    from transformers import image_utils

    config = _config(model)
    vision = getattr(config, "vision_config", config)
    if not getattr(vision, "image_size", None):
        raise SchemaError(f"{model!r} has no preprocessor_config.json and its config names no image_size")
    clip = config.model_type.startswith("clip")
    family = "OPENAI_CLIP" if clip else "IMAGENET_STANDARD"
    return {
        "size": int(vision.image_size),
        "resize": "crop" if clip else "stretch",
        "mean": [float(m) for m in getattr(image_utils, f"{family}_MEAN")],
        "std": [float(s) for s in getattr(image_utils, f"{family}_STD")],
    }


# -- audio ------------------------------------------------------------------------------------
def _whisper_encoder(name: str) -> nn.Module:
    config = _config(name)
    if config.model_type != "whisper":
        raise SchemaError(
            f"hf_audio supports Whisper encoders, and {name!r} is {config.model_type!r}; wav2vec2/HuBERT-style "
            "models need the raw waveform, which Tessera's audio preprocessor (log-mel) does not produce"
        )
    from transformers import AutoModel

    full = _load("a Whisper model", name, lambda n: _from_pretrained(AutoModel, n))
    return full.get_encoder()


def audio_options_for(model: str) -> dict[str, Any]:
    """Audio input options that give a Whisper checkpoint the log-mel it was trained on (30 s windows)."""
    config = _config(model)
    frames = 2 * int(config.max_source_positions)
    return {
        "sample_rate": WHISPER_SAMPLE_RATE,
        "n_mels": int(config.num_mel_bins),
        "n_fft": WHISPER_N_FFT,
        "hop_length": WHISPER_HOP,
        "max_seconds": frames * WHISPER_HOP / WHISPER_SAMPLE_RATE,
        "frames": frames,
        "normalize": "none",
    }


def whisper_log_mel(mel: Tensor, mask: Tensor) -> Tensor:
    """Tessera's natural-log mel ``log(power + 1e-6)`` to Whisper's scale.

    Whisper takes ``log10``, floors each clip at its peak minus 8, and maps to ``(x + 4) / 4``;
    its padding is zero audio, which the floor turns into peak minus 8, so padded frames get
    exactly that. The result matches ``WhisperFeatureExtractor`` except the first two frames
    (Whisper reflect-pads the start), the one frame after the clip's end (Tessera's spectrogram
    stops at the last sample), and bins quieter than about 1e-4 (the 1e-6 added before the log).
    """
    x = mel / math.log(10.0)
    valid = mask.unsqueeze(1)
    peak = torch.where(valid, x, torch.full_like(x, -math.inf)).amax(dim=(1, 2), keepdim=True)
    floor = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak)) - 8.0
    x = torch.where(valid, torch.maximum(x, floor), floor)
    return (x + 4.0) / 4.0


@register_encoder("hf_audio")
class HFAudioEncoder(PretrainedEncoder):
    """The encoder of a Whisper checkpoint over Tessera's log-mel spectrograms.

    Whisper attends over its whole 30 s window, padding included (that is how it was
    trained); the frame mask only decides which output tokens count. Conv stride 2 halves
    the frames, so token ``t`` is valid when frame ``2t`` is. ``n_mels`` and ``frames`` are
    filled in from the audio input and checked: Whisper refuses any other input length.
    """

    def __init__(
        self,
        model: str,
        dim: int | None = None,
        finetune: str = "frozen",
        lora_r: int = 8,
        lora_alpha: int = 16,
        pooling: str = "tokens",
        n_mels: int | None = None,
        frames: int | None = None,
    ) -> None:
        super().__init__()
        backbone = _whisper_encoder(model)
        config = backbone.config
        want = (int(config.num_mel_bins), 2 * int(config.max_source_positions))
        if (n_mels is not None and n_mels != want[0]) or (frames is not None and frames != want[1]):
            raise SchemaError(
                f"{model!r} takes {want[0]} mels x {want[1]} frames but the audio input gives {n_mels} x {frames}; "
                f"set the audio options to {audio_options_for(model)}"
            )
        self._setup(backbone, config.d_model, dim, finetune, lora_r, lora_alpha, pooling, allowed=("tokens", "mean"))

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        mel = batch.data
        frame_mask = batch.mask
        if frame_mask is None:
            frame_mask = torch.ones(mel.shape[0], mel.shape[2], dtype=torch.bool, device=mel.device)
        frame_mask = frame_mask & batch.present.unsqueeze(1)
        with self._grad():
            out = self.backbone(input_features=whisper_log_mel(mel, frame_mask))
        return self._pool(out, frame_mask[:, ::2], batch.present)
