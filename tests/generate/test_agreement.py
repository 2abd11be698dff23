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


SHAPES = {  # 16x16 grayscale drawings and two captions each
    "vertical": ("a vertical line", "an upright stroke"),
    "horizontal": ("a horizontal line", "a flat stroke lying down"),
    "block": ("a filled square", "a solid block"),
    "ring": ("an empty frame", "the outline of a box"),
}


def draw_shapes(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, classes = [], []
    for label, kind in enumerate(SHAPES):
        for _ in range(per_class):
            im = np.zeros((16, 16), np.uint8)
            a, b = rng.integers(3, 7), rng.integers(9, 13)
            if kind == "vertical":
                im[a:b, 7:9] = 255
            elif kind == "horizontal":
                im[7:9, a:b] = 255
            elif kind == "block":
                im[a:b, a:b] = 255
            else:
                im[a:b, a], im[a:b, b - 1], im[a, a:b], im[b - 1, a:b] = 255, 255, 255, 255
            images.append(np.clip(im.astype(int) + rng.integers(0, 40, im.shape), 0, 255).astype(np.uint8))
            classes.append(label)
    return np.stack(images)[..., None], np.asarray(classes)


def test_arrays_space_ranks_the_right_caption_first(minilm, tmp_path):
    """From-scratch image encoder against frozen MiniLM on arrays: matched pairs beat mismatched ones on new images."""
    from tessera.generate.agreement import IMAGE, _png

    train, labels = draw_shapes(24, seed=0)
    captions = [list(SHAPES.values())[c] for c in labels]
    space = CaptionAgreement.fit_arrays(
        train, captions, text_tower=minilm, dim=32, encoder_options={"dim": 32, "width": 8}, epochs=15, batch_size=32,
        lr=3e-3, shift=1,
    )
    test, test_labels = draw_shapes(6, seed=1)
    first = [SHAPES[k][0] for k in SHAPES]
    right = space.score_arrays(test, [first[c] for c in test_labels])
    wrong = space.score_arrays(test, [first[(c + 1) % 4] for c in test_labels])
    assert right.mean() > wrong.mean() + 0.2 and (right > wrong).mean() > 0.8
    # zero-shot: the best of one caption per class is the image's own class
    img = space.embed_arrays(test)
    txt = space.embedder.embed("caption", first)
    assert ((img @ txt.T).argmax(1) == test_labels).mean() > 0.8
    # the array path is the preprocessor's path (PNG bytes through the pipeline), and it survives save/load
    via_files = space.embedder.embed(IMAGE, [_png(im) for im in test[:5]])
    assert np.allclose(via_files, img[:5], atol=1e-5)
    again = CaptionAgreement.load(space.save(tmp_path / "space"))
    assert np.allclose(again.score_arrays(test, [first[c] for c in test_labels]), right, atol=1e-5)
    with pytest.raises(SchemaError, match=r"uint8 \(n, 16, 16, 1\)"):
        space.embed_arrays(np.zeros((2, 28, 28, 1), np.uint8))


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


def test_one_seed_gives_one_space(minilm):
    """The encoder's and heads' first weights come from the seed, not from torch's global state."""
    import torch

    images, labels = draw_shapes(4, seed=0)
    captions = [list(SHAPES.values())[c] for c in labels]
    kwargs = {"text_tower": minilm, "dim": 16, "encoder_options": {"dim": 16, "width": 4}, "epochs": 1, "batch_size": 8}
    first = CaptionAgreement.fit_arrays(images, captions, seed=3, **kwargs).embed_arrays(images)
    torch.manual_seed(99)  # whatever the caller's random state
    again = CaptionAgreement.fit_arrays(images, captions, seed=3, **kwargs).embed_arrays(images)
    other = CaptionAgreement.fit_arrays(images, captions, seed=4, **kwargs).embed_arrays(images)
    assert np.array_equal(first, again) and not np.allclose(first, other)
