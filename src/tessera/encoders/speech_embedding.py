"""Google's speech_embedding as a general audio tower: 96-d per 80 ms, run by ONNX Runtime.

The model (Lin et al., ICASSP 2020, "Training keyword spotters with limited and synthesized
speech data") ships in ``openwakeword`` 0.5.1 as two ONNX files: a mel front end over 16 kHz
audio in 16-bit sample units, and a convolutional embedder over windows of 76 mel frames
(775 ms) taken every 8 frames (80 ms). The glue between them is openWakeWord's
``AudioFeatures`` (``x / 10 + 2`` on the mel, then the windows), reproduced here, with the
mel run one clip at a time as openWakeWord does and the windows of a whole batch embedded
together; openWakeWord itself is not imported (its import alone takes seconds).
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
HOP = 160  # samples per mel frame (10 ms)
WINDOW, STEP = 76, 8  # mel frames per embedding, and between embeddings
WIDTH = 96
INT16_SCALE = 32767.0  # the mel model reads 16-bit PCM values as floats


def mel_frames(samples: int) -> int:
    """Frames the mel model gives for ``samples`` samples (its 400-sample window, no centring)."""
    return int(np.ceil(samples / HOP - 3))


def embedding_frames(samples: int) -> int:
    return (mel_frames(samples) - WINDOW) // STEP + 1


def min_samples() -> int:
    """The shortest input that yields one embedding (~0.79 s)."""
    return (WINDOW + 3) * HOP


@register_encoder("speech_embedding")
class SpeechEmbedding(Tower):
    """16 kHz waveform (at least 0.79 s window) -> 96-d, the mean of the embeddings whose window
    starts inside the clip; ``output: tokens`` gives each 80 ms embedding with that mask."""

    modality = "audio"
    input_options: ClassVar[dict[str, Any]] = WAVEFORM_16K
    runtime = "onnxruntime"
    has_tokens = True

    def __init__(
        self, trainable: bool = False, train_blocks: int = 0, output: str = "pooled", samples: int | None = None
    ) -> None:
        super().__init__()
        self._check_training(trainable, train_blocks, output)
        if samples is not None and samples < min_samples():
            raise SchemaError(
                f"encoder 'speech_embedding' needs windows of at least {min_samples() / SAMPLE_RATE:.2f} s, but the "
                f"audio input keeps {samples / SAMPLE_RATE:g} s; raise max_seconds (short clips are zero-padded)"
            )
        self._load_runtime()
        self.output_dim = WIDTH
        self._setup()

    _runtime_attrs = ("mel", "embedder")

    def _load_runtime(self) -> None:
        import onnxruntime as ort

        from tessera import zoo

        mel_path, embed_path = zoo.weight_paths(self.encoder_name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = max(1, torch.get_num_threads())
        providers = ["CPUExecutionProvider"]
        self.mel = ort.InferenceSession(str(mel_path), sess_options=opts, providers=providers)
        self.embedder = ort.InferenceSession(str(embed_path), sess_options=opts, providers=providers)

    def compute(self, batch: ModalityBatch) -> tuple[Tensor, Tensor | None]:
        data = batch.data if batch.mask is None else batch.data * batch.mask  # padding is silence, whatever it held
        waves = data.cpu().numpy().astype(np.float32) * INT16_SCALE
        if waves.shape[1] < min_samples():  # a clip shorter than one window is zero-padded to it
            waves = np.pad(waves, ((0, 0), (0, min_samples() - waves.shape[1])))
        # One clip per call: the mel model floors its output at (max - 80 dB) with the max taken
        # over the whole input tensor, so batching clips would let the loudest set the others' floor.
        mel = np.concatenate([self.mel.run(None, {"input": w[None]})[0][:, 0] for w in waves]) / 10.0 + 2.0
        starts = range(0, mel.shape[1] - WINDOW + 1, STEP)
        windows = np.stack([mel[:, s : s + WINDOW] for s in starts], axis=1)  # (B, T, 76, 32)
        b, t = windows.shape[:2]
        out = self.embedder.run(None, {"input_1": windows.reshape(b * t, WINDOW, 32, 1).astype(np.float32)})[0]
        frames = torch.from_numpy(out.reshape(b, t, WIDTH)).to(batch.data.device)
        valid = torch.tensor(valid_lengths(batch), device=frames.device)
        first_sample = torch.arange(t, device=frames.device) * STEP * HOP
        mask = first_sample.unsqueeze(0) < valid.unsqueeze(1)  # a window counts when it starts inside the clip
        return frame_output(frames, mask, self.output)
