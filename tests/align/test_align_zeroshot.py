"""Zero-shot classification through the real MiniLM text tower, with an identity projection into the shared space."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tessera.align import TEMPLATES, ZeroShotClassifier, build_align_model
from tessera.pipeline import Pipeline
from tessera.preprocess import ModalityBatch
from tessera.schema import Schema



def test_zero_shot_ranks_the_right_class(minilm: str) -> None:
    frame = pd.DataFrame({"caption": ["a dog", "a car"], "x": [0.0, 1.0]})
    schema = Schema.from_dict(
        {
            "inputs": {
                "caption": {
                    "modality": "text",
                    "options": {"tokenizer": "pretrained", "pretrained": minilm, "max_length": 16},
                },
                "image": {"modality": "numeric", "columns": ["x"]},  # a stand-in second tower, unused here
            }
        }
    )
    pipeline = Pipeline.fit(frame, schema)
    st = {"name": "sentence_transformer", "options": {"model": minilm}}  # frozen by default
    model = build_align_model(pipeline, dim=384, encoders={"caption": st}, encoder_dim=8)
    with torch.no_grad():  # identity projection: the shared space is MiniLM's own
        model.heads["caption"].weight.copy_(torch.eye(384))
    text = pipeline.preprocessors["caption"]
    classnames = ["dog", "car", "tree"]
    templates = TEMPLATES["image"][:3]
    clf = ZeroShotClassifier(model, "caption", text, classnames, templates)
    assert clf.class_embeddings.shape == (3, 384)
    torch.testing.assert_close(clf.class_embeddings.norm(dim=-1), torch.ones(3))

    def embed(texts: list[str]) -> torch.Tensor:
        ids, mask = text.encode_batch(texts)
        batch = ModalityBatch(torch.from_numpy(ids), torch.ones(len(texts), dtype=torch.bool), torch.from_numpy(mask))
        with torch.no_grad():
            return model.eval().embed("caption", batch)

    # Prompt ensembling: the class vector is the re-normalised mean of its prompts' unit vectors.
    dog_prompts = embed([t.format("dog") for t in templates])
    torch.testing.assert_close(clf.class_embeddings[0], F.normalize(dog_prompts.mean(dim=0), dim=-1), atol=1e-5, rtol=0)

    queries = [
        "a photo of a dog",
        "a puppy playing fetch in the park",
        "a red sports car on the highway",
        "a tall oak tree in the forest",
    ]
    proba = clf.predict_proba(embed(queries))
    assert proba.shape == (4, 3)
    torch.testing.assert_close(proba.sum(dim=-1), torch.ones(4))
    assert clf.predict(embed(queries)).tolist() == [0, 0, 1, 2], proba
