"""Caption-image agreement (a CLIPScore analogue): a caption of the image scores above a fluent wrong one."""

from __future__ import annotations

import numpy as np

from tessera.generate.agreement import CaptionAgreement, agreement_summary

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
