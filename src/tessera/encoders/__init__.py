"""Encoders, one per module, created by name through :func:`create_encoder`: from-scratch ones, and
pretrained towers whose weights ship in pip packages (see :mod:`tessera.zoo`)."""

from tessera.encoders.base import (
    ENCODERS,
    Encoder,
    MaskedTransformer,
    create_encoder,
    masked_mean,
    register_encoder,
)

# Importing the modules registers them.
from tessera.encoders.audio_cnn import AudioCNN
from tessera.encoders.audio_transformer import AudioTransformer
from tessera.encoders.efficientnet_lite0 import EfficientNetLite0
from tessera.encoders.image_cnn import ImageCNN
from tessera.encoders.image_vit import ImageViT
from tessera.encoders.mobilenet_v2 import MobileNetV2
from tessera.encoders.pretrained import HFAudioEncoder, HFTextEncoder, HFVisionEncoder, SentenceTransformerEncoder
from tessera.encoders.speaker import SpeakerEncoder
from tessera.encoders.speech_embedding import SpeechEmbedding
from tessera.encoders.tabular import CategoricalEmbedding, FTTransformer, NumericMLP
from tessera.encoders.text_transformer import TextTransformer
from tessera.encoders.timeseries import TimeseriesCNN, TimeseriesGRU
from tessera.encoders.video_frames import VideoFrames
from tessera.encoders.whisper_encoder import WhisperEncoder

__all__ = [
    "ENCODERS",
    "AudioCNN",
    "AudioTransformer",
    "CategoricalEmbedding",
    "EfficientNetLite0",
    "Encoder",
    "FTTransformer",
    "ImageCNN",
    "ImageViT",
    "MaskedTransformer",
    "MobileNetV2",
    "NumericMLP",
    "SpeakerEncoder",
    "SpeechEmbedding",
    "TextTransformer",
    "TimeseriesCNN",
    "TimeseriesGRU",
    "VideoFrames",
    "WhisperEncoder",
    "create_encoder",
    "masked_mean",
    "register_encoder",
]
