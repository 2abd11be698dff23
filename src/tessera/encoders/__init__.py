"""From-scratch encoders, one per module, created by name through :func:`create_encoder`."""

from tessera.encoders.base import (
    DEFAULT_ENCODER,
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
from tessera.encoders.image_cnn import ImageCNN
from tessera.encoders.image_vit import ImageViT
from tessera.encoders.pretrained import HFAudioEncoder, HFTextEncoder, HFVisionEncoder, SentenceTransformerEncoder
from tessera.encoders.tabular import CategoricalEmbedding, FTTransformer, NumericMLP
from tessera.encoders.text_transformer import TextTransformer
from tessera.encoders.timeseries import TimeseriesCNN, TimeseriesGRU
from tessera.encoders.video_frames import VideoFrames

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "AudioCNN",
    "AudioTransformer",
    "CategoricalEmbedding",
    "Encoder",
    "FTTransformer",
    "ImageCNN",
    "ImageViT",
    "MaskedTransformer",
    "NumericMLP",
    "TextTransformer",
    "TimeseriesCNN",
    "TimeseriesGRU",
    "VideoFrames",
    "create_encoder",
    "masked_mean",
    "register_encoder",
]
