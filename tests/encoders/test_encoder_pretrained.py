"""Pretrained encoders on tiny checkpoints built with each library's own config classes, plus the real MiniLM.

Tiny models are saved with ``save_pretrained`` / ``SentenceTransformer.save`` and loaded back
by path, so loading, tower selection, finetune modes and shapes are exercised exactly as
with a downloaded checkpoint, in well under a second each.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
import transformers as T  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors  # noqa: E402

from tessera.encoders import ENCODERS, create_encoder  # noqa: E402
from tessera.encoders.pretrained import (  # noqa: E402
    LORA_TARGETS,
    HFAudioEncoder,
    HFTextEncoder,
    HFVisionEncoder,
    SentenceTransformerEncoder,
    audio_options_for,
    image_options_for,
    whisper_log_mel,
)
from tessera.errors import SchemaError  # noqa: E402
from tessera.preprocess.base import LoadContext, ModalityBatch, collate_samples  # noqa: E402
from tessera.preprocess.text import TextPreprocessor  # noqa: E402

H = 32  # hidden size of every tiny model
WORDS = ["a", "red", "blue", "square", "today", "at", "night", "the", "cat", "dog"]
TEXTS = ["a red square today", "the blue dog at night", None, "a cat", "red red red red red"]
TINY_LAYERS = dict(num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, hidden_size=H)


def _save_tokenizer(folder: Path) -> int:
    """A WordPiece tokenizer with BERT's special tokens, saved the transformers way; returns its size."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("bcdefghijklmnopqrsuvwxyz") + WORDS
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    specials = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    T.PreTrainedTokenizerFast(tokenizer_object=tok, **specials).save_pretrained(folder)
    return len(vocab)


def _tower_configs(vocab: int) -> dict:
    text = dict(vocab_size=vocab, max_position_embeddings=16, **TINY_LAYERS)
    vision = dict(image_size=16, patch_size=8, **TINY_LAYERS)
    return {"text_config": text, "vision_config": vision}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One folder per family; the text ones carry the tokenizer so TextPreprocessor can load it."""
    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # token ids in CLIP/Whisper defaults lie outside the tiny vocabularies
        vocab = _save_tokenizer(root / "bert")
        bert = T.BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY_LAYERS)
        T.BertModel(bert).save_pretrained(root / "bert")
        T.CLIPModel(T.CLIPConfig(projection_dim=16, **_tower_configs(vocab))).save_pretrained(root / "clip")
        T.SiglipModel(T.SiglipConfig(**_tower_configs(vocab))).save_pretrained(root / "siglip")
        for name in ("clip", "siglip"):
            _save_tokenizer(root / name)
        T.ViTModel(T.ViTConfig(image_size=16, patch_size=8, **TINY_LAYERS)).save_pretrained(root / "vit")
        T.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(root / "vit")
        clip_pixels = T.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
        clip_pixels.save_pretrained(root / "clip")
        whisper = T.WhisperConfig(
            vocab_size=100, num_mel_bins=80, d_model=H, encoder_layers=1, decoder_layers=1,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_source_positions=50, max_target_positions=16,
            pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
        )  # fmt: skip
        T.WhisperModel(whisper).save_pretrained(root / "whisper")
        T.Wav2Vec2Config().save_pretrained(root / "wav2vec2")
        _save_sentence_transformer(root / "bert", root / "st")
    return {p.name: str(p) for p in root.iterdir()}


def _save_sentence_transformer(bert: Path, out: Path) -> None:
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers.models import Normalize, Pooling, Transformer
    body = Transformer(str(bert))
    SentenceTransformer(modules=[body, Pooling(H, "mean"), Normalize()], device="cpu").save(str(out))


def text_batch(folder: str, texts: list[str | None] = TEXTS, max_length: int = 12) -> ModalityBatch:
    pre = TextPreprocessor(["t"], tokenizer="pretrained", pretrained=folder, max_length=max_length)
    pre.fit(pd.DataFrame({"t": [t for t in texts if t]}))
    return collate_samples(pre, [pre.load([t], LoadContext()) for t in texts])


def trainable(module: torch.nn.Module) -> dict[str, int]:
    return {n: p.numel() for n, p in module.named_parameters() if p.requires_grad}


# -- registry ---------------------------------------------------------------------------------
def test_registered_names() -> None:
    assert {"hf_text", "sentence_transformer", "hf_vision", "hf_audio"} <= set(ENCODERS)


# -- text -------------------------------------------------------------------------------------
def test_hf_text_tokens_mask_and_absent_rows(tiny: dict[str, str]) -> None:
    batch = text_batch(tiny["bert"])
    enc = create_encoder("hf_text", model=tiny["bert"], dim=16).eval()
    assert isinstance(enc.backbone, T.BertModel) and enc.output_dim == 16
    tokens, mask = enc(batch)
    assert tokens.shape == (5, 12, 16) and torch.equal(mask, batch.mask)
    assert torch.isfinite(tokens).all()
    assert not tokens[2].any() and not tokens[~mask].any()  # absent row and padding are zeros
    # Padding ids are invisible: attention and outputs ignore them.
    scrambled = ModalityBatch(batch.data.masked_fill(~batch.mask, 7), batch.present, batch.mask)
    torch.testing.assert_close(enc(scrambled)[0], tokens)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_hf_text_pooled(tiny: dict[str, str], pooling: str) -> None:
    enc = HFTextEncoder(tiny["bert"], pooling=pooling).eval()
    vec, mask = enc(text_batch(tiny["bert"]))
    assert mask is None and vec.shape == (5, H) and enc.output_dim == H
    assert not vec[2].any() and vec[[0, 1, 3, 4]].abs().sum(-1).gt(0).all()


@pytest.mark.parametrize(("family", "tower"), [("clip", T.CLIPTextModel), ("siglip", T.SiglipTextModel)])
def test_hf_text_takes_the_text_tower(tiny: dict[str, str], family: str, tower: type) -> None:
    enc = HFTextEncoder(tiny[family], dim=8, pooling="pooler").eval()
    assert type(enc.backbone) is tower
    vec, _ = enc(text_batch(tiny[family]))
    assert vec.shape == (5, 8) and torch.isfinite(vec).all()
    with pytest.raises(SchemaError, match="pooling 'cls' means nothing"):
        HFTextEncoder(tiny[family], pooling="cls")


def test_hf_text_checks_tokenizer_fits(tiny: dict[str, str]) -> None:
    with pytest.raises(SchemaError, match="tokenizer has 9000 tokens.*tokenizer: pretrained"):
        HFTextEncoder(tiny["bert"], vocab_size=9000)
    with pytest.raises(SchemaError, match="max_length 100 exceeds the 64 positions"):
        HFTextEncoder(tiny["bert"], max_length=100)


# -- finetune modes ---------------------------------------------------------------------------
def test_frozen_backbone_gets_no_grad_and_stays_in_eval(tiny: dict[str, str]) -> None:
    enc = HFTextEncoder(tiny["bert"], dim=16, pooling="mean")
    assert set(trainable(enc)) == {"proj.weight", "proj.bias"}
    enc.train()
    assert enc.training and enc.proj.training and not enc.backbone.training
    before = {n: p.clone() for n, p in enc.backbone.named_parameters()}
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    enc(text_batch(tiny["bert"]))[0].pow(2).sum().backward()
    assert enc.proj.weight.grad is not None
    assert all(p.grad is None for p in enc.backbone.parameters())
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in enc.backbone.named_parameters())


def test_full_finetune_trains_everything(tiny: dict[str, str]) -> None:
    enc = HFTextEncoder(tiny["bert"], dim=16, finetune="full", pooling="mean").train()
    assert all(p.requires_grad for p in enc.parameters()) and enc.backbone.training
    enc(text_batch(tiny["bert"]))[0].pow(2).sum().backward()
    assert enc.backbone.embeddings.word_embeddings.weight.grad is not None


LORA_R = 4


@pytest.mark.parametrize(
    ("make", "targets", "layers"),
    [
        (lambda t: HFTextEncoder(t["bert"], finetune="lora", lora_r=LORA_R), ("query", "value"), 1),
        (lambda t: HFTextEncoder(t["clip"], finetune="lora", lora_r=LORA_R), ("q_proj", "v_proj"), 1),
        (lambda t: HFVisionEncoder(t["siglip"], finetune="lora", lora_r=LORA_R), ("q_proj", "v_proj"), 1),
        (lambda t: HFVisionEncoder(t["vit"], finetune="lora", lora_r=LORA_R), None, 1),  # renamed in transformers 5
        (lambda t: HFAudioEncoder(t["whisper"], finetune="lora", lora_r=LORA_R), ("q_proj", "v_proj"), 1),
        (lambda t: SentenceTransformerEncoder(t["st"], finetune="lora", lora_r=LORA_R), ("query", "value"), 1),
    ],
    ids=["bert", "clip_text", "siglip_vision", "vit", "whisper", "sentence_transformer"],
)
def test_lora_trains_only_adapters(tiny: dict[str, str], make, targets: tuple[str, str] | None, layers: int) -> None:
    enc = make(tiny)
    names = trainable(enc.backbone)
    assert names and all(".lora_" in n for n in names)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}
    assert adapted == set(targets) if targets else adapted in [set(pair) for pair in LORA_TARGETS]
    # A (r x H) and B (H x r) per target per layer.
    assert sum(names.values()) == layers * 2 * 2 * LORA_R * H
    assert not any(p.requires_grad for n, p in enc.backbone.named_parameters() if ".lora_" not in n)


def test_lora_starts_as_the_pretrained_model(tiny: dict[str, str]) -> None:
    """LoRA's B starts at zero, so before training the adapted model computes what the original does."""
    batch = text_batch(tiny["bert"])
    torch.manual_seed(1)
    frozen = HFTextEncoder(tiny["bert"], pooling="mean").eval()
    lora = HFTextEncoder(tiny["bert"], pooling="mean", finetune="lora").eval()
    torch.testing.assert_close(lora(batch)[0], frozen(batch)[0])


def test_bad_finetune_and_pooling(tiny: dict[str, str]) -> None:
    with pytest.raises(SchemaError, match="finetune must be one of"):
        HFTextEncoder(tiny["bert"], finetune="partial")
    with pytest.raises(SchemaError, match="pooling must be one of"):
        HFTextEncoder(tiny["bert"], pooling="max")


# -- sentence-transformers ----------------------------------------------------------------------
def test_sentence_transformer_matches_encode_on_tiny_model(tiny: dict[str, str]) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["a red square today", "the blue dog at night", "a cat"]
    enc = create_encoder("sentence_transformer", model=tiny["st"]).eval()
    vec, mask = enc(text_batch(tiny["st"], texts))
    expected = SentenceTransformer(tiny["st"], device="cpu").encode(texts, convert_to_tensor=True)
    assert mask is None and enc.output_dim == H
    torch.testing.assert_close(vec, expected, atol=1e-5, rtol=0)
    assert set(trainable(enc)) == set()


def test_sentence_transformer_absent_rows_are_zero(tiny: dict[str, str]) -> None:
    vec, _ = SentenceTransformerEncoder(tiny["st"]).eval()(text_batch(tiny["st"]))
    assert not vec[2].any() and torch.isfinite(vec).all()
    torch.testing.assert_close(vec[[0, 1, 3, 4]].norm(dim=-1), torch.ones(4))  # the Normalize module ran



def test_real_minilm_equals_sentence_transformers_encode(minilm: str) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog",
        "Héllo, wörld! Ünïcode and numbers 12345",
        "short",
    ]
    enc = SentenceTransformerEncoder(minilm).eval()
    vec, _ = enc(text_batch(minilm, texts, max_length=32))
    expected = SentenceTransformer(minilm, device="cpu").encode(texts, convert_to_tensor=True)
    assert vec.shape == (4, 384) and enc.output_dim == 384
    torch.testing.assert_close(vec, expected, atol=1e-5, rtol=0)


def test_predictor_end_to_end_with_minilm(minilm: str, tiny_table: Path, tiny_schema: dict, tmp_path: Path) -> None:
    from tessera.predictor import Predictor

    schema = tiny_schema
    schema["inputs"] = {name: schema["inputs"][name] for name in ("caption", "numeric")}
    schema["inputs"]["caption"]["options"] = {"tokenizer": "pretrained", "pretrained": minilm, "max_length": 16}
    model = {"encoders": {"caption": {"name": "sentence_transformer", "options": {"model": minilm}}}, "dim": 16}
    pred = Predictor(model=model, train={"epochs": 2, "batch_size": 16}).fit(tiny_table, schema)
    assert pred.model.encoders["caption"].output_dim == 384
    first = pred.predict(tiny_table)
    assert len(first) == 48 and set(first.unique()) <= {0, 1, 2, 3}
    loaded = type(pred).load(pred.save(tmp_path / "saved"))
    pd.testing.assert_series_equal(loaded.predict(tiny_table), first)
    pd.testing.assert_frame_equal(loaded.predict_proba(tiny_table), pred.predict_proba(tiny_table))


# -- vision -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "tower", "tokens"),
    [("vit", T.ViTModel, 5), ("clip", T.CLIPVisionModel, 5), ("siglip", T.SiglipVisionModel, 4)],
)
def test_hf_vision_tokens_and_pooler(tiny: dict[str, str], family: str, tower: type, tokens: int) -> None:
    present = torch.tensor([True, False, True])
    batch = ModalityBatch(torch.randn(3, 3, 16, 16) * present.view(3, 1, 1, 1), present)
    enc = HFVisionEncoder(tiny[family], dim=8, image_size=16, in_channels=3).eval()
    assert type(enc.backbone) is tower
    out, mask = enc(batch)
    assert out.shape == (3, tokens, 8) and torch.equal(mask, present[:, None].expand(3, tokens))
    assert not out[1].any() and torch.isfinite(out).all()
    vec, none = HFVisionEncoder(tiny[family], pooling="pooler").eval()(batch)
    assert none is None and vec.shape == (3, H) and not vec[1].any()


def test_hf_vision_refuses_other_image_sizes(tiny: dict[str, str]) -> None:
    with pytest.raises(SchemaError, match=r"takes 3x16x16 images.*image_options_for"):
        HFVisionEncoder(tiny["vit"], image_size=64, in_channels=3)
    with pytest.raises(SchemaError, match="pooling 'cls' means nothing for siglip_vision_model"):
        HFVisionEncoder(tiny["siglip"], pooling="cls")


def test_image_options_for_reads_the_processor_config(tiny: dict[str, str]) -> None:
    assert image_options_for(tiny["vit"]) == {"size": 16, "resize": "stretch", "mean": [0.5] * 3, "std": [0.5] * 3}
    clip = image_options_for(tiny["clip"])
    assert clip["size"] == 16 and clip["resize"] == "crop" and clip["mean"][0] == pytest.approx(0.48145466)
    # No preprocessor_config.json: size from the model config, the family's processor defaults.
    assert image_options_for(tiny["siglip"]) == {"size": 16, "resize": "stretch", "mean": [0.5] * 3, "std": [0.5] * 3}


def test_hf_vision_on_image_preprocessor_output(tiny: dict[str, str], tmp_path: Path) -> None:
    from PIL import Image

    from tessera.preprocess.image import ImagePreprocessor

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    pre = ImagePreprocessor(["image"], **image_options_for(tiny["vit"]))
    batch = collate_samples(pre, [pre.load([str(tmp_path / "x.png")], LoadContext()), None])
    vec, _ = HFVisionEncoder(tiny["vit"], pooling="cls", image_size=pre.size, in_channels=3).eval()(batch)
    assert vec.shape == (2, H) and vec[0].any() and not vec[1].any()


# -- audio ------------------------------------------------------------------------------------
def test_hf_audio_whisper_tokens_follow_the_frame_mask(tiny: dict[str, str]) -> None:
    mask = torch.zeros(3, 100, dtype=torch.bool)
    mask[0], mask[2, :37] = True, True
    present = torch.tensor([True, False, True])
    batch = ModalityBatch(torch.randn(3, 80, 100) - 5, present, mask)
    enc = create_encoder("hf_audio", model=tiny["whisper"], dim=8, n_mels=80, frames=100).eval()
    assert isinstance(enc.backbone, T.WhisperPreTrainedModel) and not hasattr(enc.backbone, "decoder")
    out, tok_mask = enc(batch)
    assert out.shape == (3, 50, 8)
    assert tok_mask.sum(1).tolist() == [50, 0, 19]  # ceil(37 / 2): Whisper's conv stride 2
    assert not out[1].any() and not out[~tok_mask].any() and torch.isfinite(out).all()
    # What lies in padded frames never reaches the model: they become the clip's floor.
    noisy = ModalityBatch(batch.data.masked_fill(~mask.unsqueeze(1), 3.0), present, mask)
    torch.testing.assert_close(enc(noisy)[0], out)
    vec, none = HFAudioEncoder(tiny["whisper"], pooling="mean").eval()(batch)
    assert none is None and vec.shape == (3, H)


def test_hf_audio_checks_input_shape_and_family(tiny: dict[str, str]) -> None:
    with pytest.raises(SchemaError, match=r"takes 80 mels x 100 frames.*'frames': 100"):
        HFAudioEncoder(tiny["whisper"], n_mels=64, frames=1000)
    with pytest.raises(SchemaError, match="Whisper encoders.*'wav2vec2'.*raw waveform"):
        HFAudioEncoder(tiny["wav2vec2"])
    with pytest.raises(SchemaError, match="pooling must be one of"):
        HFAudioEncoder(tiny["whisper"], pooling="cls")
    assert audio_options_for(tiny["whisper"]) == {
        "sample_rate": 16000, "n_mels": 80, "n_fft": 400, "hop_length": 160,
        "max_seconds": 1.0, "frames": 100, "normalize": "none",
    }  # fmt: skip


def test_whisper_log_mel_matches_the_whisper_feature_extractor(tmp_path: Path) -> None:
    """Tessera's audio preprocessor + whisper_log_mel give Whisper's own features, bar the clip edges."""
    import soundfile as sf

    from tessera.preprocess.audio import AudioPreprocessor

    t = np.arange(16000 * 2) / 16000
    noise = np.random.default_rng(0).standard_normal(t.size)
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    whisper_options = dict(sample_rate=16000, n_mels=80, n_fft=400, hop_length=160, max_seconds=30, frames=3000)
    pre = AudioPreprocessor(["audio"], **whisper_options)
    batch = collate_samples(pre, [pre.load([str(tmp_path / "a.wav")], LoadContext())])
    ours = whisper_log_mel(batch.data, batch.mask)[0].numpy()
    extractor = T.WhisperFeatureExtractor(feature_size=80)
    theirs = extractor(wave, sampling_rate=16000, return_tensors="np")["input_features"][0]
    assert ours.shape == theirs.shape == (80, 3000)
    # Frames 0-1 see Whisper's reflect padding, frame 201 the clip's last 40 samples (Tessera's
    # spectrogram stops at frame 200); quiet bins differ by the 1e-6 Tessera adds before the log.
    inside, after = np.abs(ours - theirs)[:, 2:201], np.abs(ours - theirs)[:, 202:]
    assert np.median(inside) < 1e-4 and np.quantile(inside, 0.999) < 2e-3 and inside.max() < 0.02
    assert after.max() < 1e-6


# -- loading errors ---------------------------------------------------------------------------
def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="local directory .*nope.* does not exist"):
        HFTextEncoder(str(tmp_path / "nope"))


def test_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot load a model config from local directory"):
        HFVisionEncoder(str(tmp_path))


def test_unknown_hub_id_says_the_hub_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SchemaError, match="Hugging Face hub id 'nobody/no-such-model'.*hub is offline"):
        HFTextEncoder("nobody/no-such-model")
    with pytest.raises(SchemaError, match="hub id 'nobody/no-such-st'.*hub is offline"):
        SentenceTransformerEncoder("nobody/no-such-st")

