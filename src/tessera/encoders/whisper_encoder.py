"""The encoder of Whisper tiny.en (CTranslate2, int8) as a speech tower: 384-d per 20 ms frame.

Whisper's encoder was trained on 30 s windows of its own log-mel spectrogram, so the tower
takes the 16 kHz waveform and computes that spectrogram itself with faster-whisper's feature
extractor, padded to 3000 frames exactly as faster-whisper does before transcribing. The
model runs in CTranslate2 (int8 weights), which computes no gradients: the tower is frozen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from tessera.encoders.base import register_encoder
from tessera.encoders.tower import WAVEFORM_16K, Tower, frame_output, valid_lengths
from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30  # Whisper's fixed input window
MEL_FRAMES = 3000  # 10 ms each; the encoder's stride-2 convolution halves them to 1500 tokens
WIDTH = 384  # tiny's d_model


@register_encoder("whisper_encoder")
class WhisperEncoder(Tower):
    """16 kHz waveform (at most 30 s) -> 384-d, the mean of the encoder frames that cover the
    clip; ``output: tokens`` gives all 1500 frames with a mask of those that do."""

    modality = "audio"
    input_options: ClassVar[dict[str, Any]] = WAVEFORM_16K
    runtime = "ctranslate2"
    has_tokens = True

    def __init__(
        self, trainable: bool = False, train_blocks: int = 0, output: str = "pooled", samples: int | None = None
    ) -> None:
        super().__init__()
        self._check_training(trainable, train_blocks, output)
        if samples is not None and samples > WINDOW_SECONDS * SAMPLE_RATE:
            raise SchemaError(
                f"encoder 'whisper_encoder' sees at most {WINDOW_SECONDS} s, but the audio input keeps "
                f"{samples / SAMPLE_RATE:g} s; set max_seconds to {WINDOW_SECONDS} or less"
            )
        self._load_runtime()
        self.output_dim = WIDTH
        self._setup()

    _runtime_attrs = ("whisper",)

    def _load_runtime(self) -> None:
        from tessera.transcribe import load_whisper

        self.whisper = load_whisper(max(1, torch.get_num_threads()))

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        from faster_whisper.audio import pad_or_trim

        waves = batch.data.cpu().numpy()
        valid = valid_lengths(batch)
        extract = self.whisper.feature_extractor
        feats, frames = [], []
        for wave, n in zip(waves, valid):
            mel = extract(wave[:n])
            frames.append(min(mel.shape[-1], MEL_FRAMES))
            feats.append(pad_or_trim(mel, MEL_FRAMES))
        out = np.asarray(self.whisper.encode(np.stack(feats).astype(np.float32)))  # (B, 1500, 384)
        tokens = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(batch.data.device)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        mask = 2 * positions.unsqueeze(0) < torch.tensor(frames, device=tokens.device).unsqueeze(1)
        return frame_output(tokens, mask, self.output)
