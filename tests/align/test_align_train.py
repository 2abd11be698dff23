"""fit_alignment learns a pairing that is known by construction: "text" is a fixed rotation of "image" plus noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.align import build_align_model, fit_alignment, paired_recall_at_1
from tessera.errors import SchemaError
from tessera.pipeline import CachedSplit, Pipeline, cache_split
from tessera.schema import Schema
from tessera.table import read_table

D = 8


def paired_frame(n: int, seed: int, rotation: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, D))
    text = image @ rotation + 0.05 * rng.standard_normal((n, D))
    frame = pd.DataFrame({**{f"i{j}": image[:, j] for j in range(D)}, **{f"t{j}": text[:, j] for j in range(D)}})
    frame["label"] = (image[:, 0] > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def splits() -> tuple[Pipeline, CachedSplit, CachedSplit]:
    rotation, _ = np.linalg.qr(np.random.default_rng(99).standard_normal((D, D)))
    schema = Schema.from_dict(
        {
            "target": "label",
            "inputs": {
                "image": {"modality": "numeric", "columns": [f"i{j}" for j in range(D)]},
                "text": {"modality": "numeric", "columns": [f"t{j}" for j in range(D)]},
            },
        }
    )
    train, val = paired_frame(64, 0, rotation), paired_frame(40, 1, rotation)
    pipeline = Pipeline.fit(train, schema)
    cached = [cache_split(pipeline, pipeline.dataset(read_table(f))) for f in (train, val)]
    return pipeline, cached[0], cached[1]


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_alignment_finds_the_pairs(splits, loss: str) -> None:
    pipeline, train, val = splits
    torch.manual_seed(0)
    model = build_align_model(pipeline, dim=16, encoder_dim=32, loss=loss)
    before = paired_recall_at_1(model, val)
    history = fit_alignment(model, train, val, epochs=60, batch_size=16, lr=3e-3, seed=0, device="cpu")
    assert len(history) == 60
    after = history[-1]["val_recall@1"]
    # Chance is 1/40 = 0.025.
    assert after > 0.8 and after > before + 0.5, (before, [round(h["val_recall@1"], 2) for h in history[::10]])
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_queue_and_supervised_term_run(splits) -> None:
    pipeline, train, val = splits
    torch.manual_seed(0)
    model = build_align_model(pipeline, dim=16, encoder_dim=32, anchor="image", classifier=True)
    head = model.classifier.weight.detach().clone()
    history = fit_alignment(
        model, train, val, epochs=3, batch_size=16, queue_size=32, seed=0, device="cpu",
        weight_schedule=lambda epoch: (1.0, 0.0 if epoch == 0 else 1.0),
    )
    assert all(np.isfinite(h["train_loss"]) for h in history)
    assert not torch.equal(model.classifier.weight, head)  # the supervised term trained the head
    assert 0 < model.logit_scale.item() <= np.log(100) + 1e-6


def test_one_input_cannot_align(splits) -> None:
    pipeline, train, _ = splits
    model = build_align_model(pipeline.restrict(["image"]), dim=4, encoder_dim=8)
    with pytest.raises(SchemaError, match="two inputs"):
        fit_alignment(model, train, epochs=1)


def test_a_locked_tower_is_embedded_once_and_gives_the_same_training(splits, monkeypatch) -> None:
    """Caching a tower with nothing to train changes no number: same losses as running it every step."""
    import tessera.align.train as align_train

    pipeline, train, val = splits
    histories, calls = [], []
    for cache in (True, False):
        torch.manual_seed(0)
        model = build_align_model(pipeline, dim=16, encoder_dim=32)
        for p in [*model.encoders["text"].parameters(), *model.heads["text"].parameters()]:
            p.requires_grad_(False)
        counted: list[int] = []
        original = model.encoders["text"].forward
        monkeypatch.setattr(model.encoders["text"], "forward", lambda batch: (counted.append(len(batch)), original(batch))[1])
        if not cache:
            monkeypatch.setattr(align_train, "locked_embeddings", lambda *args: {})
        histories.append(fit_alignment(model, train, None, epochs=3, batch_size=16, seed=0, device="cpu"))
        calls.append(sum(counted))
    assert calls[0] == len(train) and calls[1] == 3 * (len(train) // 16) * 16  # once vs every step
    for a, b in zip(*histories):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_retrieval_is_over_unique_items_with_chance_beside_it():
    """Issue 18: a photo with 2 captions is 2 rows; its other caption must count as a hit, and each photo once."""
    from tessera.align.train import unique_item_retrieval

    photos = torch.eye(3)
    image = photos.repeat_interleave(2, dim=0)  # rows 0,1: photo 0; rows 2,3: photo 1; ...
    caption = image + 0.01 * torch.arange(6).unsqueeze(1)  # two different captions per photo, near their photo
    caption = torch.nn.functional.normalize(caption, dim=1)
    out = unique_item_retrieval(image, caption, ks=(1, 5))
    assert out["items"] == [3, 6]
    assert out["recall@1"] == 1.0  # per row, photo 0's query would have had its other caption counted as a miss
    assert out["chance@1"] == pytest.approx(0.5 * (2 / 6 + 1 / 3))  # photo->caption: 2 of 6 relevant; caption->photo: 1 of 3
    assert out["chance@5"] == pytest.approx(0.5 * (1.0 + 1.0))  # 5 of 6 captions always include one of 2; 5 >= 3 photos
    shuffled = unique_item_retrieval(image, caption[torch.tensor([2, 3, 4, 5, 0, 1])], ks=(1,))
    assert shuffled["recall@1"] == 0.0
