"""One preprocessor per modality, created by name through :func:`create_preprocessor`."""

from tessera.preprocess.base import (
    PREPROCESSORS,
    DecodeCost,
    Features,
    LoadContext,
    ModalityBatch,
    Noise,
    Preprocessor,
    Sample,
    collate_samples,
    create_preprocessor,
    load_located,
    media_modalities,
    media_modality_of,
    modalities,
    preprocessor_class,
    register,
)

# Importing the modules registers them.
from tessera.preprocess import image, audio, video, text, numeric, categorical, timeseries  # noqa: E402,F401

__all__ = [
    "PREPROCESSORS",
    "DecodeCost",
    "Features",
    "LoadContext",
    "ModalityBatch",
    "Noise",
    "Preprocessor",
    "Sample",
    "collate_samples",
    "create_preprocessor",
    "load_located",
    "media_modalities",
    "media_modality_of",
    "modalities",
    "preprocessor_class",
    "register",
]
