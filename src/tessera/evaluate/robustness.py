"""How does a trained model degrade when inputs go missing or get noisy?

Both are simulated on the cached (already preprocessed) test split, so a curve costs one
inference pass per point and needs no media decoding:

* missing: for each input, a random fraction of rows have it removed exactly as a
  missing cell would be (see :func:`tessera.evaluate.contribution.hide`);
* noise, per modality, on the rows where the input is present:
  - image, video: Gaussian noise with the given std in normalised units (after the
    mean/std normalisation, so 1.0 is one channel std of the training images);
  - audio: noise at a signal-to-noise ratio in dB. The cache holds natural-log mel
    power ``log(mel + 1e-6)``, so noise is added in the power domain: power =
    exp(logmel) - 1e-6; the clip's power is its mean over valid frames and mel bins;
    noise power = clip power / 10^(SNR/10), flat across mel bins (white noise through
    area-normalised Slaney filters is about flat) with exponential per-bin fluctuation
    (the periodogram of Gaussian noise); then the log is taken again. For audio cached
    with ``normalize="utterance"`` the z-scored values are treated as log power and
    re-normalised afterwards, which is an approximation (the original scale is lost);
  - text: token dropout, each valid non-special token replaced by [UNK] with the given
    probability (by padding, masked out, for tokenizers without an [UNK] token);
  - numeric, timeseries: Gaussian noise in standardised units;
  - categorical: each category id replaced by "unknown" (id 1) with the given probability.

Results are tidy DataFrames: one row per (input, level) with the main metric's value.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import torch

from tessera.evaluate.contribution import hide
from tessera.evaluate.metrics import predict_split
from tessera.pipeline import CachedSplit
from tessera.preprocess import ModalityBatch
from tessera.preprocess.audio import LOG_EPS

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
GAUSSIAN_STDS = (0.0, 0.25, 0.5, 1.0, 2.0)
# Per modality: the noise's name and its levels, from clean to worst.
NOISE_LEVELS: dict[str, tuple[str, tuple[float, ...]]] = {
    "image": ("gaussian_std", GAUSSIAN_STDS),
    "video": ("gaussian_std", GAUSSIAN_STDS),
    "audio": ("snr_db", (math.inf, 20.0, 10.0, 5.0, 0.0, -5.0)),
    "text": ("token_dropout", FRACTIONS),
    "numeric": ("gaussian_std", GAUSSIAN_STDS),
    "timeseries": ("gaussian_std", GAUSSIAN_STDS),
    "categorical": ("category_dropout", FRACTIONS),
}
UNKNOWN_CATEGORY = 1


def _score(model: torch.nn.Module, split: CachedSplit, target: Any, batch_size: int) -> float:
    y, scores = predict_split(model, split, target, batch_size)
    return target.main_score(y, scores)


def _replace(split: CachedSplit, name: str, batch: ModalityBatch) -> CachedSplit:
    return CachedSplit({**split.inputs, name: batch}, split.target, split.rows)


def missing_curve(
    model: torch.nn.Module,
    split: CachedSplit,
    target: Any,
    fractions: Sequence[float] = FRACTIONS,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The main metric when each input is missing from a random fraction of the rows.

    The rows are nested: those missing at 25% are also missing at 50%, so the curve
    moves only because more rows lose the input, not because of a new draw.
    """
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    records = []
    for name in model.encoders:
        for fraction in fractions:
            rows = torch.zeros(len(split), dtype=torch.bool)
            rows[order[: int(round(fraction * len(split)))]] = True
            value = _score(model, _replace(split, name, hide(split.inputs[name], rows)), target, batch_size)
            records.append({"input": name, "fraction_missing": float(fraction), "metric": target.main_metric.metric, "value": value})
    return pd.DataFrame(records)


def noise_curve(
    model: torch.nn.Module,
    pipeline: Any,
    split: CachedSplit,
    target: Any,
    levels: dict[str, Sequence[float]] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The main metric under increasing noise on one input at a time (the others clean).

    ``levels`` maps an input name to its levels (default: per modality, see NOISE_LEVELS).
    ``severity`` numbers the levels from clean (0) to worst, whatever their unit.
    """
    records = []
    for name in model.encoders:
        pre = pipeline.preprocessors[name]
        if pre.modality not in NOISE_LEVELS:
            continue
        kind, default = NOISE_LEVELS[pre.modality]
        for severity, level in enumerate((levels or {}).get(name, default)):
            generator = torch.Generator().manual_seed(seed)
            noisy = corrupt(split.inputs[name], pre, float(level), generator)
            value = _score(model, _replace(split, name, noisy), target, batch_size)
            records.append(
                {
                    "input": name,
                    "modality": pre.modality,
                    "noise": kind,
                    "level": float(level),
                    "severity": severity,
                    "metric": target.main_metric.metric,
                    "value": value,
                }
            )
    return pd.DataFrame(records)


def corrupt(batch: ModalityBatch, pre: Any, level: float, generator: torch.Generator) -> ModalityBatch:
    """A noisy copy of one input's batch; absent rows are left as they are."""
    modality = pre.modality
    here = batch.present
    if modality in ("image", "video", "numeric", "timeseries"):
        noise = torch.randn(batch.data.shape, generator=generator) * level
        keep = _broadcast(here, batch.data)
        if batch.mask is not None:
            keep = keep & _broadcast_mask(batch.mask, batch.data)
        return ModalityBatch(torch.where(keep, batch.data + noise, batch.data), batch.present, batch.mask)
    if modality == "audio":
        return ModalityBatch(add_noise_at_snr(batch, level, generator, getattr(pre, "normalize", "none")), batch.present, batch.mask)
    if modality == "text":
        return drop_tokens(batch, pre, level, generator)
    if modality == "categorical":
        hit = (torch.rand(batch.data.shape, generator=generator) < level) & _broadcast(here, batch.data) & (batch.data != 0)
        return ModalityBatch(torch.where(hit, torch.full_like(batch.data, UNKNOWN_CATEGORY), batch.data), batch.present, batch.mask)
    raise ValueError(f"no noise model for modality {modality!r}")


def _broadcast(rows: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """(B,) row flags shaped to broadcast over ``data`` (B, ...)."""
    return rows.view(-1, *([1] * (data.dim() - 1)))


def _broadcast_mask(mask: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """A (B, T) mask shaped to broadcast over (B, T, ...) data: video frames, series steps, features."""
    return mask.view(*mask.shape, *([1] * (data.dim() - mask.dim())))


def add_noise_at_snr(batch: ModalityBatch, snr_db: float, generator: torch.Generator, normalize: str = "none") -> torch.Tensor:
    """Log-mel ``(B, n_mels, frames)`` with noise added in the power domain at ``snr_db`` (module docstring)."""
    if math.isinf(snr_db) and snr_db > 0:
        return batch.data
    logmel = batch.data.double()
    frames = batch.mask if batch.mask is not None else torch.ones(logmel.shape[0], logmel.shape[-1], dtype=torch.bool)
    valid = (frames & batch.present.unsqueeze(1)).unsqueeze(1).expand_as(logmel)  # (B, n_mels, frames)
    power = (logmel.exp() - LOG_EPS).clamp_min(0.0)
    counts = valid.sum((1, 2)).clamp_min(1)
    clip_power = torch.where(valid, power, 0.0).sum((1, 2)) / counts
    noise_power = clip_power / 10.0 ** (snr_db / 10.0)
    fluctuation = torch.empty(logmel.shape, dtype=torch.float64).exponential_(1.0, generator=generator)
    noisy = torch.log(power + noise_power.view(-1, 1, 1) * fluctuation + LOG_EPS)
    if normalize == "utterance":
        mean = torch.where(valid, noisy, 0.0).sum((1, 2)) / counts
        var = torch.where(valid, (noisy - mean.view(-1, 1, 1)) ** 2, 0.0).sum((1, 2)) / counts
        noisy = (noisy - mean.view(-1, 1, 1)) / var.sqrt().clamp_min(1e-5).view(-1, 1, 1)
    return torch.where(valid, noisy, logmel).to(batch.data.dtype)


def drop_tokens(batch: ModalityBatch, pre: Any, fraction: float, generator: torch.Generator) -> ModalityBatch:
    """Replace each valid, non-special token with [UNK] with probability ``fraction``."""
    tokenizer = getattr(pre, "backend_tokenizer", None)  # a TextPreprocessor's fitted tokenizers.Tokenizer
    unk, special, pad = 1, {0, 1, 2, 3}, 0
    if tokenizer is not None:
        unk = next((i for i in map(tokenizer.token_to_id, ("[UNK]", "<unk>")) if i is not None), None)
        special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        pad = int(getattr(pre, "pad_id", 0))
    ids, mask = batch.data, batch.mask if batch.mask is not None else torch.ones_like(batch.data, dtype=torch.bool)
    candidates = mask & batch.present.unsqueeze(1) & ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))
    hit = candidates & (torch.rand(ids.shape, generator=generator) < fraction)
    if unk is not None:
        return ModalityBatch(torch.where(hit, torch.full_like(ids, unk), ids), batch.present, batch.mask)
    return ModalityBatch(torch.where(hit, torch.full_like(ids, pad), ids), batch.present, mask & ~hit)
