"""Caption-image agreement (a CLIPScore analogue): a caption of the image scores above a fluent wrong one."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.errors import SchemaError
from tessera.generate.agreement import CaptionAgreement, agreement_summary, other_images, reference_agreement

from .conftest import CAPTIONS


def test_right_captions_agree_more_than_wrong_ones(caption_table, minilm, tmp_path):
    frame, folder = caption_table
    images = [str(folder / p) for p in frame.photo]
    captions = [[c, c.replace("square", "box")] for c in frame.caption]
    space = CaptionAgreement.fit(
        images, captions, image_tower="image_cnn", text_tower=minilm, dim=32, epochs=60, batch_size=4, lr=1e-2
    )
    right = space.score(images, list(frame.caption))
    wrong = space.score(images, [CAPTIONS[c] for c in np.roll(frame.color.to_numpy(), 3)])
    assert right.mean() > wrong.mean() + 0.2 and (right > wrong).mean() > 0.8
    again = CaptionAgreement.load(space.save(tmp_path / "space"))
    assert np.allclose(again.score(images, list(frame.caption)), right, atol=1e-5)
    _, context = agreement_summary(space, images, list(frame.caption), captions)
    assert context["reference_captions"] > context["mismatched_captions"]


class _WordSpace:
    """A stand-in embedder: image "img3" and any caption naming "thing3" embed to the same unit vector."""

    def input_for(self, modality: str) -> str:
        return modality

    def embed(self, name, values, base_dir=None):
        ids = [int(str(v).split("img" if name == "image" else "thing")[1].split()[0]) for v in values]
        return np.eye(8)[ids]


def test_reference_agreement_scores_own_captions_high_and_shuffled_ones_low():
    images = [f"img{i}" for i in range(6)]
    refs = [[f"a thing{i} here", f"thing{i} again"] for i in range(6)]
    space = CaptionAgreement(_WordSpace())
    out = reference_agreement(space, images, refs, seed=1)
    assert np.allclose(out["human_captions"], 1.0) and np.allclose(out["shuffled_captions"], 0.0)
    assert out["human_captions"].shape == out["shuffled_captions"].shape == (6,)
    with pytest.raises(SchemaError, match="references 2"):
        reference_agreement(space, images, refs[:2] + [[" "]] + refs[3:])
    with pytest.raises(SchemaError, match="at least two images"):
        reference_agreement(space, images[:1], refs[:1])


def test_other_images_never_pairs_an_image_with_itself():
    other = other_images(50, seed=3)
    assert (other != np.arange(50)).all() and ((other >= 0) & (other < 50)).all()
    assert (other_images(50, seed=3) == other).all()
    with pytest.raises(SchemaError, match="at least two"):
        other_images(1)
