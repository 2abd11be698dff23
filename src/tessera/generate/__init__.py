"""Text out: captions, answers and chat from images, sound or text (the LLaVA pattern on a causal LM).

Modules, one concept each: :mod:`~tessera.generate.config` (configs as data),
:mod:`~tessera.generate.lm` (pretrained or from-scratch LMs), :mod:`~tessera.generate.gguf`
(GGUF files converted once), :mod:`~tessera.generate.chat` (turn formats),
:mod:`~tessera.generate.projector` (encoder features into token space),
:mod:`~tessera.generate.model` (the mixed sequence), :mod:`~tessera.generate.train` (the two
stages) and :mod:`~tessera.generate.generator` (the Python API).
"""

from tessera.generate.chat import FORMATS, ChatFormat, resolve_chat_format
from tessera.generate.config import GenerateConfig
from tessera.generate.generator import Generator
from tessera.generate.lm import load_causal_lm
from tessera.generate.model import MultimodalLM
from tessera.generate.projector import create_projector

__all__ = [
    "FORMATS",
    "ChatFormat",
    "GenerateConfig",
    "Generator",
    "MultimodalLM",
    "create_projector",
    "load_causal_lm",
    "resolve_chat_format",
]
