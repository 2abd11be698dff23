"""The language model a generator writes with: a pretrained causal LM, or a small one learnt from scratch.

Pretrained: a hub id or a local folder (``AutoModelForCausalLM``/``AutoTokenizer``; with
``HF_HUB_OFFLINE=1`` only local files are read), or a GGUF (``gguf:NAME`` or a ``.gguf``
path), converted once by :mod:`tessera.generate.gguf`. Weights are loaded in float32,
which is what CPUs compute fastest.

From scratch, for when no pretrained LM fits (another language, a tiny domain vocabulary, no
download allowed): a byte-level BPE tokenizer trained on the training texts with the
``tokenizers`` library, and a small Llama-architecture decoder (``transformers``'
``LlamaConfig``) with tied input/output embeddings.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable

import torch

from tessera.encoders.pretrained import _from_pretrained, _load
from tessera.generate.config import ScratchSpec
from tessera.generate.gguf import converted_gguf

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SPECIAL = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}


def is_gguf(source: str | os.PathLike) -> bool:
    text = str(source)
    return text.startswith("gguf:") or text.lower().endswith(".gguf")


def resolve_lm_folder(source: str | os.PathLike) -> str:
    """Where ``from_pretrained`` reads a source: GGUFs go through their converted folder."""
    return str(converted_gguf(source)) if is_gguf(source) else str(source)


def load_causal_lm(source: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretrained causal LM and its tokenizer, in eval mode; a bad source is a SchemaError saying where it looked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_lm_folder(source)
    tokenizer = _load("a tokenizer", folder, AutoTokenizer.from_pretrained)
    model = _load("a causal language model", folder, lambda n: _from_pretrained(AutoModelForCausalLM, n))
    return model.eval(), tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A byte-level BPE (GPT-2's scheme: any text encodes, spaces survive decoding) learnt from ``texts``.

    It adds ``<bos>`` in front of every text, as Llama's and Gemma's tokenizers do, so a
    decoder learns from a start token and the multimodal LM puts one first in every sequence.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    bos = SPECIAL["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def build_scratch_lm(spec: ScratchSpec, tokenizer: Any) -> PreTrainedModel:
    """A small randomly initialised Llama decoder sized by ``spec`` for ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=4 * spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).float()


def hidden_size(lm: torch.nn.Module) -> int:
    return int(lm.get_input_embeddings().embedding_dim)
