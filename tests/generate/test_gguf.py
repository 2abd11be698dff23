"""A GGUF is converted once into a cached transformers folder, written whole, and reused (a tiny file built here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tessera.errors import SchemaError
from tessera.generate import gguf as gguf_cache

pytest.importorskip("gguf")

PIECES = ["\u2581a", "\u2581red", "\u2581blue", "\u2581square", "\u2581sky", "\u2581the", "\u2581on"]


def write_tiny_gguf(path, vocab_extra=PIECES, dim=16, layers=1, heads=2, ffn=32):
    """A random llama-architecture GGUF with a sentencepiece-style vocabulary and Gemma's turn tokens."""
    import gguf

    tokens = (
        ["<unk>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>"]
        + list("abcdefghijklmnopqrstuvwxyz\u2581")
        + list(vocab_extra)
    )
    types = [2, 3, 3, 3, 3] + [1] * (len(tokens) - 5)  # unknown, control x4, normal
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(dim // heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    tensor = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.1  # noqa: E731
    w.add_tensor("token_embd.weight", tensor(len(tokens), dim))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    w.add_tensor("output.weight", tensor(len(tokens), dim))
    for b in range(layers):
        for name, shape in (
            ("attn_q", (dim, dim)),
            ("attn_k", (dim, dim)),
            ("attn_v", (dim, dim)),
            ("attn_output", (dim, dim)),
            ("ffn_gate", (ffn, dim)),
            ("ffn_up", (ffn, dim)),
            ("ffn_down", (dim, ffn)),
        ):
            w.add_tensor(f"blk.{b}.{name}.weight", tensor(*shape))
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(dim, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_converted_once_then_reused(tmp_path, monkeypatch):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "lm"
    folder = gguf_cache.converted_gguf(path)
    meta = json.loads((folder / gguf_cache.META_FILE).read_text())
    assert meta["sha256"] == gguf_cache.file_sha256(path) and folder.name.startswith("tiny-")
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temporary folder left behind
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2, 4]  # <eos> and <end_of_turn> both end a reply

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_cache, "_convert", no_second_conversion)
    assert gguf_cache.converted_gguf(path, cache) == folder

    from tessera.generate.lm import load_causal_lm

    lm, tok = load_causal_lm(path)  # through the cached folder
    assert tok("<start_of_turn>").input_ids[-1] == 3  # control tokens stay whole
    assert lm.config.vocab_size == len(tok)


def test_bad_sources():
    with pytest.raises(SchemaError, match="unknown packaged GGUF 'gguf:llama-9000'"):
        gguf_cache.converted_gguf("gguf:llama-9000")
    with pytest.raises(SchemaError, match="GGUF file not found"):
        gguf_cache.converted_gguf("/nonexistent/model.gguf")
