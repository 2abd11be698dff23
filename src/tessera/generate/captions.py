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
    """Class names (index = label) with the training, validation and held-out caption lists of each class.

    ``validation`` is for choosing sampling settings (guidance, the text prior's k and
    temperature); ``heldout`` is only ever scored. The three sets share no caption.
    """

    classes: tuple[str, ...]
    train: tuple[tuple[str, ...], ...]
    heldout: tuple[tuple[str, ...], ...]
    validation: tuple[tuple[str, ...], ...] = ()

    def pairs(self, which: str = "train") -> list[tuple[int, str]]:
        """``(label, caption)`` for every caption of the chosen set."""
        sets = {"train": self.train, "heldout": self.heldout, "validation": self.validation}
        if which not in sets:
            raise SchemaError(f"caption set must be one of {sorted(sets)}, got {which!r}")
        return [(label, caption) for label, captions in enumerate(sets[which]) for caption in captions]


def check_disjoint(**sets: tuple[tuple[str, ...], ...]) -> None:
    """Raise if any caption is in two of the named sets (a programming error in the tables)."""
    flat = {name: {c for group in groups for c in group} for name, groups in sets.items()}
    names = list(flat)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            overlap = flat[a] & flat[b]
            if overlap:
                raise AssertionError(f"captions in both the {a} and the {b} sets: {sorted(overlap)}")


@dataclass(frozen=True)
class _Names:
    """Per class: the training names, the held-out name and the validation name (none shared)."""

    train: tuple[str, ...]
    heldout: str
    validation: str


def _build(
    names: dict[str, _Names],
    descriptions: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
    train_frames: tuple[str, ...],
    heldout_frames: tuple[str, ...],
    validation_frames: tuple[str, ...],
) -> ClassCaptions:
    """Frames x names of each class, plus that class's own descriptions (train, held-out, validation)."""
    classes = tuple(names)
    train, heldout, validation = [], [], []
    for cls in classes:
        n = names[cls]
        own_train, own_heldout, own_validation = descriptions[cls]
        train.append(tuple(dict.fromkeys([f.format(name) for name in n.train for f in train_frames] + list(own_train))))
        heldout.append(tuple(f.format(n.heldout) for f in heldout_frames) + own_heldout)
        validation.append(tuple(f.format(n.validation) for f in validation_frames) + own_validation)
    check_disjoint(train=tuple(train), heldout=tuple(heldout), validation=tuple(validation))  # caught at import
    return ClassCaptions(classes, tuple(train), tuple(heldout), tuple(validation))


# Training frames: CLIP's ImageNet prompt templates (Radford et al. 2021), a standard, generic set
# chosen without looking at the held-out frames; validation frames are a third, separate set.
_TRAIN_FRAMES = (
    "a photo of a {}", "a {}", "a picture of a {}", "a grayscale image of a {}", "a product photo of a {}",
    "a blurry photo of a {}", "a black and white photo of a {}", "a low resolution photo of a {}",
    "a cropped photo of a {}", "a close-up photo of a {}", "a drawing of a {}", "a photo of the {}",
)

# -- Fashion-MNIST ------------------------------------------------------------------------
# The held-out names and descriptions are the ones every earlier result was measured on; unchanged.
_FASHION_NAMES = {
    "T-shirt/top": _Names(("t-shirt", "top", "short-sleeved top"), "tee", "cotton t-shirt"),
    "Trouser": _Names(("pair of trousers", "pair of slacks", "pair of leggings"), "pair of pants", "pair of chinos"),
    "Pullover": _Names(("pullover", "jumper", "sweatshirt"), "knitted sweater", "wool jersey"),
    "Dress": _Names(("dress", "frock", "sundress"), "gown", "maxi dress"),
    "Coat": _Names(("coat", "jacket", "raincoat"), "winter jacket", "parka"),
    "Sandal": _Names(("sandal", "flip-flop", "slide sandal"), "summer sandal", "beach sandal"),
    "Shirt": _Names(("shirt", "dress shirt", "flannel shirt"), "button-up blouse", "oxford shirt"),
    "Sneaker": _Names(("sneaker", "trainer", "running shoe"), "athletic sneaker shoe", "tennis shoe"),
    "Bag": _Names(("bag", "purse", "shoulder bag"), "handbag", "satchel"),
    "Ankle boot": _Names(("ankle boot", "boot", "chelsea boot"), "short leather boot", "heeled bootie"),
}
_FASHION_DESCRIPTIONS = {
    "T-shirt/top": (("a short-sleeved cotton top", "a casual tee with short sleeves", "a top with a round neck and short sleeves",
                     "a casual top for warm days"),
                    ("a plain top with short sleeves for summer",), ("a simple top with a crew neck",)),
    "Trouser": (("long trousers with two legs", "a pair of slacks", "trousers that cover both legs",
                 "denim trousers seen from the front"),
                ("jeans for the legs",), ("pants reaching down to the ankles",)),
    "Pullover": (("a long-sleeved knit jumper", "a warm pullover sweater", "a knit top with long sleeves and no buttons",
                  "a cosy wool sweater for cold days"),
                 ("a woolly jumper to pull over the head",), ("a thick sweater with long sleeves",)),
    "Dress": (("a one-piece dress for women", "a long frock", "a sleeveless dress down to the knees",
               "a summer dress for a party"),
              ("an elegant evening gown",), ("a dress worn to a wedding",)),
    "Coat": (("a long coat with buttons", "a heavy outdoor coat", "a warm coat with a zip and long sleeves",
              "outerwear to keep out the cold"),
             ("a long winter overcoat",), ("a padded jacket for snowy weather",)),
    "Sandal": (("an open shoe with straps", "a strappy sandal", "a flat shoe for the beach",
                "open-toed footwear for hot weather"),
               ("summer footwear with straps",), ("a light open shoe with thin straps",)),
    "Shirt": (("a collared shirt with buttons", "a long-sleeved button shirt", "a shirt with a collar and a row of buttons",
               "a checked shirt with long sleeves"),
              ("a formal shirt with a collar",), ("a business shirt that buttons down the front",)),
    "Sneaker": (("a low sports shoe", "a trainer for running", "a canvas shoe with laces",
                 "a sporty shoe with a rubber sole"),
                ("athletic footwear for the gym",), ("a casual lace-up shoe for jogging",)),
    "Bag": (("a handbag with a handle", "a purse to carry things", "a leather bag with a strap",
             "a bag for carrying things around"),
            ("a tote for shopping",), ("a carryall with two handles",)),
    "Ankle boot": (("a boot that covers the ankle", "a short boot with a heel", "a leather boot up to the ankle",
                    "a boot with a low heel and a zip"),
                   ("footwear for winter that reaches the ankle",), ("a heeled boot that stops above the ankle",)),
}
FASHION = _build(
    _FASHION_NAMES,
    _FASHION_DESCRIPTIONS,
    train_frames=_TRAIN_FRAMES,
    heldout_frames=("an image showing a {}", "here is a {}"),
    validation_frames=("there is a {} in this picture", "a {} on a plain background"),
)

# -- MNIST ----------------------------------------------------------------------------------
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# The held-out name is the numeral ("somebody wrote the numeral 7"); training and validation use the word, in other frames.
_MNIST_NAMES = {str(d): _Names((word,), str(d), word) for d, word in enumerate(_DIGITS)}
_MNIST_SHAPES = {
    "0": (("an oval zero", "a zero shaped like an egg"), "a round zero", "a zero like a ring"),
    "1": (("a one drawn as a single stroke", "a vertical one"), "a straight one", "a one like a thin line"),
    "2": (("a two with a flat base", "a two with a curved top"), "a curvy two", "a two like a swan"),
    "3": (("a three with two curves", "a three open on the left"), "a three with two bumps", "a three like a backwards e"),
    "4": (("a four with an open top", "a four with a crossing line"), "a four with a closed top", "a four like a chair"),
    "5": (("a five with a round belly", "a five with a hook"), "a five with a flat top", "a five with a bar on top"),
    "6": (("a six with a round bottom", "a six with a tail at the top"), "a six with a loop at the bottom", "a six like a snail"),
    "7": (("a seven with a slanted stroke", "a seven with a flat top"), "a seven with a crossbar", "a seven like a hook"),
    "8": (("an eight shaped like a snowman", "an eight with a twist in the middle"), "an eight made of two loops", "an eight like an hourglass"),
    "9": (("a nine with a round head", "a nine with a long tail"), "a nine with a loop at the top", "a nine like a balloon on a string"),
}
_MNIST_DESCRIPTIONS = {
    d: ((f"the digit {_DIGITS[int(d)]}", f"a handwritten {d}") + train, (heldout,), (validation,))
    for d, (train, heldout, validation) in _MNIST_SHAPES.items()
}
MNIST = _build(
    _MNIST_NAMES,
    _MNIST_DESCRIPTIONS,
    train_frames=("a handwritten {}", "the number {}", "a drawing of the digit {}", "{} written by hand", "an image of a {}",
                  "a scribbled {}", "a {} in pen", "a messy {}"),
    heldout_frames=("somebody wrote the numeral {}", "a scanned {} in ink"),
    validation_frames=("a {} drawn with a marker", "a quickly written {}"),
)

CAPTIONS = {"fashion_mnist": FASHION, "mnist": MNIST}
