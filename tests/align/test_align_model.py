"""AlignModel: which pairs are tied, rows lacking an input stay out, FIFO queue, a factory over build_encoder."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tessera.align import AlignModel, FeatureQueue, alignment_pairs, build_align_model
from tessera.errors import SchemaError
from tessera.losses import clip_loss, siglip_loss
from tessera.pipeline import Pipeline, cache_split
from tessera.preprocess import ModalityBatch
from tessera.schema import Schema
from tessera.table import read_table


class Identity(nn.Module):
    """A stand-in encoder: the batch data is already a feature vector."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.output_dim = dim

    def pooled(self, batch: ModalityBatch) -> torch.Tensor:
        return batch.data * batch.present.unsqueeze(1)


def test_pairs_anchor_versus_all_pairs() -> None:
    names = ["image", "audio", "text"]
    assert alignment_pairs(names, "image") == [("image", "audio"), ("image", "text")]
    assert alignment_pairs(names, None) == [("image", "audio"), ("image", "text"), ("audio", "text")]
    model = AlignModel({n: Identity(4) for n in names}, dim=8, anchor="text")
    assert model.pairs == [("text", "image"), ("text", "audio")]
    with pytest.raises(SchemaError, match="anchor"):
        AlignModel({n: Identity(4) for n in names}, anchor="video")
    with pytest.raises(SchemaError, match="loss"):
        AlignModel({n: Identity(4) for n in names}, loss="triplet")


def test_paper_initialisations() -> None:
    clip = AlignModel({"a": Identity(2), "b": Identity(2)}, dim=4)
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07)) and clip.logit_bias is None
    sig = AlignModel({"a": Identity(2), "b": Identity(2)}, dim=4, loss="siglip")
    assert sig.logit_scale.item() == pytest.approx(math.log(10)) and sig.logit_bias.item() == -10.0


def test_embeddings_are_unit_vectors_and_absent_rows_zero() -> None:
    model = AlignModel({"a": Identity(3), "b": Identity(3)}, dim=5)
    batch = ModalityBatch(torch.randn(4, 3), torch.tensor([True, True, False, True]))
    emb = model.embed("a", batch)
    assert emb.shape == (4, 5)
    assert torch.allclose(emb[[0, 1, 3]].norm(dim=1), torch.ones(3))
    assert torch.equal(emb[2], torch.zeros(5))


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_missing_rows_are_excluded_from_a_pair(loss: str) -> None:
    torch.manual_seed(0)
    model = AlignModel({"a": Identity(3), "b": Identity(3), "c": Identity(3)}, dim=4, anchor="a", loss=loss)
    emb = {n: torch.nn.functional.normalize(torch.randn(6, 4), dim=-1) for n in "abc"}
    present = {
        "a": torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool),
        "b": torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool),
        "c": torch.tensor([0, 0, 0, 0, 0, 0], dtype=torch.bool),  # never present: its pair is skipped
    }
    rows = torch.tensor([0, 2, 3, 4])
    if loss == "clip":
        expected = clip_loss(emb["a"][rows], emb["b"][rows], model.logit_scale)
    else:
        expected = siglip_loss(emb["a"][rows], emb["b"][rows], model.logit_scale, model.logit_bias)
    got = model.loss(emb, present)
    assert got.item() == pytest.approx(expected.item())
    # Changing what an absent row holds changes nothing.
    emb["b"][1] = -emb["a"][1]
    emb["a"][5] = emb["b"][0]
    assert model.loss(emb, present).item() == pytest.approx(expected.item())
    none_present = {n: torch.zeros(6, dtype=torch.bool) for n in "abc"}
    assert model.loss(emb, none_present) is None


def test_queue_is_fifo_per_input() -> None:
    q = FeatureQueue(size=4, dim=2)
    assert q.get("a") is None and len(q) == 0
    rows = torch.arange(12, dtype=torch.float32).view(6, 2)
    q.push("a", rows[:3])
    assert torch.equal(q.get("a"), rows[:3])
    q.push("a", rows[3:])
    assert torch.equal(q.get("a"), rows[2:])  # oldest two dropped, order kept
    q.push("b", rows[:1])
    assert torch.equal(q.get("b"), rows[:1]) and len(q) == 4
    x = torch.ones(2, 2, requires_grad=True)
    q.push("b", x * 2)
    assert not q.get("b").requires_grad  # detached: no graph kept alive across steps
    with pytest.raises(SchemaError):
        q.push("a", torch.zeros(1, 3))
    with pytest.raises(SchemaError):
        FeatureQueue(0, 2)


def test_queue_feeds_the_loss_as_negatives() -> None:
    torch.manual_seed(1)
    model = AlignModel({"a": Identity(3), "b": Identity(3)}, dim=4)
    emb = {n: torch.nn.functional.normalize(torch.randn(5, 4), dim=-1) for n in "ab"}
    present = {n: torch.ones(5, dtype=torch.bool) for n in "ab"}
    q = FeatureQueue(8, 4)
    q.push("a", torch.randn(3, 4))
    q.push("b", torch.randn(3, 4))
    expected = clip_loss(emb["a"], emb["b"], model.logit_scale, (q.get("a"), q.get("b")))
    assert model.loss(emb, present, q).item() == pytest.approx(expected.item())
    assert model.loss(emb, present, q).item() > model.loss(emb, present).item()


def test_build_align_model_from_a_pipeline(tiny_table: Path, tiny_schema: dict) -> None:
    schema = {"target": "label", "inputs": {k: tiny_schema["inputs"][k] for k in ("image", "caption", "numeric")}}
    schema = Schema.from_dict(schema)
    table = read_table(tiny_table)
    pipeline = Pipeline.fit(table.frame, schema)
    model = build_align_model(
        pipeline,
        dim=16,
        encoders={"caption": {"options": {"depth": 1}}},
        encoder_dim=32,
        anchor="image",
        classifier=True,
    )
    assert type(model.encoders["image"]).__name__ == "ImageCNN"  # the modality default
    assert model.encoders["caption"].output_dim == 32
    assert model.pairs == [("image", "caption"), ("image", "numeric")]
    assert model.classifier is not None and model.classifier.out_features == 4
    split = cache_split(pipeline, pipeline.dataset(table))
    batch = next(split.batches(8))
    emb = model(batch.inputs)
    assert {n: tuple(e.shape) for n, e in emb.items()} == {n: (8, 16) for n in ("image", "caption", "numeric")}
    present = {n: b.present for n, b in batch.inputs.items()}
    model.loss(emb, present).backward()
    assert model.heads["caption"].weight.grad is not None
    with pytest.raises(SchemaError, match="unknown input"):
        build_align_model(pipeline, encoders={"video": {}})
    with pytest.raises(SchemaError, match="unknown key"):
        build_align_model(pipeline, encoders={"image": {"nmae": "image_vit"}})
