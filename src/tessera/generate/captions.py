"""Captions for labelled images: several paraphrases per class, and a held-out set never used in training.

Fashion-MNIST and MNIST come with a class id, not a caption. A text-to-image model trained
on one caption per class learns ten prompts, not language; several paraphrases per class
("a photo of a sandal", "an open shoe with straps") make it follow the text tower's space
instead. The *held-out* paraphrases use other words and other sentence shapes ("summer
footwear with straps"): generated-class accuracy on them measures whether the model
generalises through the text embedding, not whether it memorised its training prompts.

Each class has its own descriptions, and shared sentence frames are filled with the class
names; training and held-out sets share neither a frame nor a description.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.errors import SchemaError


@dataclass(frozen=True)
class ClassCaptions:
    """Class names (index = label) with the training and held-out caption lists of each class."""

    classes: tuple[str, ...]
    train: tuple[tuple[str, ...], ...]
    heldout: tuple[tuple[str, ...], ...]

    def pairs(self, which: str = "train") -> list[tuple[int, str]]:
        """``(label, caption)`` for every caption of the chosen set."""
        if which not in ("train", "heldout"):
            raise SchemaError(f"caption set must be 'train' or 'heldout', got {which!r}")
        sets = self.train if which == "train" else self.heldout
        return [(label, caption) for label, captions in enumerate(sets) for caption in captions]


def _build(
    names: dict[str, tuple[str, ...]],
    descriptions: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
    train_frames: tuple[str, ...],
    heldout_frames: tuple[str, ...],
) -> ClassCaptions:
    """Frames x the first name of each class, plus that class's own descriptions (train, held-out)."""
    classes = tuple(names)
    train, heldout = [], []
    for cls in classes:
        first, *others = names[cls]
        own_train, own_heldout = descriptions[cls]
        train.append(tuple(f.format(first) for f in train_frames) + own_train)
        heldout.append(tuple(f.format(others[0] if others else first) for f in heldout_frames) + own_heldout)
    overlap = {c for t in train for c in t} & {c for h in heldout for c in h}
    if overlap:  # a programming error in the tables below, caught at import
        raise AssertionError(f"captions in both training and held-out sets: {sorted(overlap)}")
    return ClassCaptions(classes, tuple(train), tuple(heldout))


# -- Fashion-MNIST ------------------------------------------------------------------------
_FASHION_NAMES = {
    "T-shirt/top": ("t-shirt", "tee"),
    "Trouser": ("pair of trousers", "pair of pants"),
    "Pullover": ("pullover", "knitted sweater"),
    "Dress": ("dress", "gown"),
    "Coat": ("coat", "winter jacket"),
    "Sandal": ("sandal", "summer sandal"),
    "Shirt": ("shirt", "button-up blouse"),
    "Sneaker": ("sneaker", "athletic sneaker shoe"),
    "Bag": ("bag", "handbag"),
    "Ankle boot": ("ankle boot", "short leather boot"),
}
_FASHION_DESCRIPTIONS = {
    "T-shirt/top": (("a short-sleeved cotton top", "a casual tee with short sleeves"), ("a plain top with short sleeves for summer",)),
    "Trouser": (("long trousers with two legs", "a pair of slacks"), ("jeans for the legs",)),
    "Pullover": (("a long-sleeved knit jumper", "a warm pullover sweater"), ("a woolly jumper to pull over the head",)),
    "Dress": (("a one-piece dress for women", "a long frock"), ("an elegant evening gown",)),
    "Coat": (("a long coat with buttons", "a heavy outdoor coat"), ("a long winter overcoat",)),
    "Sandal": (("an open shoe with straps", "a strappy sandal"), ("summer footwear with straps",)),
    "Shirt": (("a collared shirt with buttons", "a long-sleeved button shirt"), ("a formal shirt with a collar",)),
    "Sneaker": (("a low sports shoe", "a trainer for running"), ("athletic footwear for the gym",)),
    "Bag": (("a handbag with a handle", "a purse to carry things"), ("a tote for shopping",)),
    "Ankle boot": (("a boot that covers the ankle", "a short boot with a heel"), ("footwear for winter that reaches the ankle",)),
}
FASHION = _build(
    _FASHION_NAMES,
    _FASHION_DESCRIPTIONS,
    train_frames=("a photo of a {}", "a {}", "a picture of a {}", "a grayscale image of a {}", "a product photo of a {}"),
    heldout_frames=("an image showing a {}", "here is a {}"),
)

# -- MNIST ----------------------------------------------------------------------------------
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MNIST_NAMES = {str(d): (word, str(d)) for d, word in enumerate(_DIGITS)}
_MNIST_DESCRIPTIONS = {
    "0": (("the digit zero", "a handwritten 0"), ("a round zero",)),
    "1": (("the digit one", "a handwritten 1"), ("a straight one",)),
    "2": (("the digit two", "a handwritten 2"), ("a curvy two",)),
    "3": (("the digit three", "a handwritten 3"), ("a three with two bumps",)),
    "4": (("the digit four", "a handwritten 4"), ("a four with a closed top",)),
    "5": (("the digit five", "a handwritten 5"), ("a five with a flat top",)),
    "6": (("the digit six", "a handwritten 6"), ("a six with a loop at the bottom",)),
    "7": (("the digit seven", "a handwritten 7"), ("a seven with a crossbar",)),
    "8": (("the digit eight", "a handwritten 8"), ("an eight made of two loops",)),
    "9": (("the digit nine", "a handwritten 9"), ("a nine with a loop at the top",)),
}
MNIST = _build(
    _MNIST_NAMES,
    _MNIST_DESCRIPTIONS,
    train_frames=("a handwritten {}", "the number {}", "a drawing of the digit {}", "{} written by hand", "an image of a {}"),
    heldout_frames=("somebody wrote the numeral {}", "a scanned {} in ink"),
)

CAPTIONS = {"fashion_mnist": FASHION, "mnist": MNIST}
