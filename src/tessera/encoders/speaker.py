"""Resemblyzer's GE2E speaker encoder as a voice tower: one 256-d L2-normalised vector per clip.

The model (Wan et al., ICASSP 2018, "Generalized End-to-End Loss for Speaker Verification") is
three LSTM layers over 40-band mel frames and a linear layer; ``resemblyzer`` ships its weights
(``pretrained.pt``) and its audio front end. Each clip goes through the front end exactly as
``VoiceEncoder.embed_utterance`` expects (``preprocess_wav``: volume normalised to -30 dBFS,
long silences cut by WebRTC VAD), is cut into 1.6 s partial utterances, and the L2-normalised
mean of their embeddings is the clip's vector. The LSTM is split into its three layers here
(a stacked LSTM without dropout is exactly that), so ``train_blocks`` can pick the last ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera.encoders.base import register_encoder
from tessera.encoders.tower import WAVEFORM_16K, Tower, valid_lengths

if TYPE_CHECKING:
    from tessera.preprocess.base import ModalityBatch

SAMPLE_RATE = 16000
N_MELS, HIDDEN, LAYERS, WIDTH = 40, 256, 3, 256
RATE, MIN_COVERAGE = 1.3, 0.75  # embed_utterance's defaults: partials per second, last-partial coverage


@register_encoder("speaker")
class SpeakerEncoder(Tower):
    """16 kHz waveform -> 256-d speaker embedding (non-negative, unit length). 4 blocks for
    ``train_blocks``: the three LSTM layers and the output layer."""

    modality = "audio"
    input_options: ClassVar[dict[str, Any]] = WAVEFORM_16K

    def __init__(self, trainable: bool = False, train_blocks: int = 0, output: str = "pooled") -> None:
        super().__init__()
        self._check_training(trainable, train_blocks, output)
        from tessera import zoo

        (path,) = zoo.weight_paths(self.encoder_name)
        self.layers = nn.ModuleList(nn.LSTM(N_MELS if i == 0 else HIDDEN, HIDDEN, batch_first=True) for i in range(LAYERS))
        self.linear = nn.Linear(HIDDEN, WIDTH)
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self.load_state_dict(_split_lstm(state))
        self.output_dim = WIDTH
        self._setup()

    def blocks(self) -> list[nn.Module]:
        return [*self.layers, self.linear]

    def partials(self, wave: np.ndarray) -> np.ndarray:
        """The clip's 1.6 s partial-utterance mel spectrograms ``(P, 160, 40)``, as embed_utterance cuts them."""
        from resemblyzer import VoiceEncoder, preprocess_wav, wav_to_mel_spectrogram

        processed = preprocess_wav(wave, source_sr=SAMPLE_RATE)
        if processed.size < SAMPLE_RATE // 10:  # all silence by the VAD's account: keep the clip as it is
            processed = wave
        wav_slices, mel_slices = VoiceEncoder.compute_partial_slices(len(processed), RATE, MIN_COVERAGE)
        if wav_slices[-1].stop >= len(processed):
            processed = np.pad(processed, (0, wav_slices[-1].stop - len(processed)))
        mel = wav_to_mel_spectrogram(processed)
        return np.stack([mel[s] for s in mel_slices]).astype(np.float32)

    def embed_partials(self, mels: Tensor) -> Tensor:
        """GE2E's forward: the last layer's final hidden state, linear, ReLU, L2-normalised."""
        x = mels
        for lstm in self.layers:
            x, (hidden, _) = lstm(x)
        raw = F.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        waves = batch.data.cpu().numpy()
        valid = valid_lengths(batch)
        parts = [self.partials(w[:n]) for w, n in zip(waves, valid)]
        counts = [len(p) for p in parts]
        embeds = self.embed_partials(torch.from_numpy(np.concatenate(parts)).to(batch.data.device))
        means = torch.stack([chunk.mean(dim=0) for chunk in embeds.split(counts)])
        return means / means.norm(dim=1, keepdim=True).clamp(min=1e-12), None


def _split_lstm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Resemblyzer's 3-layer ``lstm.*_l{k}`` weights as three one-layer LSTMs ``layers.{k}.*_l0``.

    The checkpoint's ``similarity_weight``/``similarity_bias`` scale GE2E's training loss and
    play no part in an embedding, so they are left out.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("lstm."):
            name, layer = key[len("lstm.") :].rsplit("_l", 1)
            out[f"layers.{layer}.{name}_l0"] = value
        elif not key.startswith("similarity_"):
            out[key] = value
    return out
