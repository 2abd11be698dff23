"""Visual question answering from data that has no questions: templates over labels and captions.

VQA datasets are large and their images are not here; but any labelled or captioned image
set can ask questions whose answers it knows:

* **class questions** (a labelled set, e.g. Fashion-MNIST): "What kind of garment is this?"
  (answer: the class name) and "Is this a sandal?" (yes for the true class, no for a
  random other one, half each);
* **word questions** (a captioned set, e.g. Flickr8k): "Is there a dog in the picture?":
  yes when any of the photo's captions mentions a dog, no for a word from the same list
  that none of them mentions. Annotators leave things out, so a few "no" answers are wrong;
  the noise is the same for every model compared.

Each question keeps its ``template``, so the baseline every VQA number is read against is
the majority answer of that template in the training questions (Antol et al., 2015's
"prior per question type"): it scores 50 % on balanced yes/no questions and the most
common class's share on class questions, without looking at the image.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from tessera.errors import SchemaError

# What the question names, and the caption words (singular, plural, near forms) that count as a mention.
WORDS: dict[str, tuple[str, ...]] = {
    "a dog": ("dog", "dogs", "puppy"),
    "a man": ("man", "men"),
    "a woman": ("woman", "women", "lady"),
    "a child": ("child", "children", "kid", "kids", "boy", "boys", "girl", "girls"),
    "water": ("water", "lake", "river", "ocean", "pool"),
    "grass": ("grass", "grassy", "lawn"),
    "snow": ("snow", "snowy"),
    "a ball": ("ball", "balls"),
    "a bike": ("bike", "bikes", "bicycle", "bicycles"),
    "a beach": ("beach", "sand", "sandy"),
    "a street": ("street", "road", "sidewalk"),
    "a shirt": ("shirt", "shirts", "t-shirt"),
    "a hat": ("hat", "hats", "helmet", "cap"),
    "a car": ("car", "cars", "truck"),
}
CLASS_QUESTION = "What kind of garment is this?"
YES_NO_CLASS = "Is this a {}?"
YES_NO_WORD = "Is there {} in the picture?"


def class_questions(
    frame: pd.DataFrame,
    image: str,
    label: str,
    *,
    names: dict[str, str] | None = None,
    question: str = CLASS_QUESTION,
    seed: int = 0,
) -> pd.DataFrame:
    """Two questions per row of a labelled image table (other columns, e.g. ``split``, are kept)."""
    if label not in frame.columns or image not in frame.columns:
        raise SchemaError(f"columns {image!r} and {label!r} must be in the table; it has {list(frame.columns)}")
    named = frame[label].map(lambda v: (names or {}).get(v, str(v).lower()))
    classes = sorted(named.unique())
    if len(classes) < 2:
        raise SchemaError(f"class questions need at least two classes in {label!r}, got {classes}")
    rng = np.random.default_rng(seed)
    what = frame.assign(question=question, answer=named.values, template="class")
    asked = []
    for true in named:
        if rng.random() < 0.5:
            asked.append((true, "yes"))
        else:
            others = [c for c in classes if c != true]
            asked.append((others[rng.integers(len(others))], "no"))
    yes_no = frame.assign(
        question=[YES_NO_CLASS.format(c) for c, _ in asked], answer=[a for _, a in asked], template="is_this_class"
    )
    return pd.concat([what, yes_no]).sort_index(kind="stable").reset_index(drop=True)


def mentions(captions: Sequence[str], forms: Sequence[str]) -> bool:
    words = {w for c in captions for w in re.findall(r"[a-z][a-z-]*", c.lower())}
    return any(f in words for f in forms)


def word_questions(
    frame: pd.DataFrame,
    image: str,
    caption: str,
    *,
    words: dict[str, tuple[str, ...]] = WORDS,
    per_image: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Per image, up to ``per_image`` yes and as many no questions about ``words`` (as many of each, so balanced).

    Columns: the image column, ``question``, ``answer``, ``template`` and any column constant
    over an image's rows (``split``).
    """
    rng = np.random.default_rng(seed)
    keep = [c for c in frame.columns if c != caption and frame.groupby(image, sort=False)[c].nunique().max() <= 1]
    rows = []
    for value, group in frame.groupby(image, sort=False):
        said = [w for w, forms in words.items() if mentions(group[caption].tolist(), forms)]
        unsaid = [w for w in words if w not in said]
        if not said or not unsaid:
            continue
        base = group.iloc[0][keep].to_dict()
        k = min(per_image, len(said), len(unsaid))
        asked = [(w, "yes") for w in rng.permutation(said)[:k]] + [(w, "no") for w in rng.permutation(unsaid)[:k]]
        for word, answer in asked:
            rows.append({**base, "question": YES_NO_WORD.format(word), "answer": answer, "template": "word"})
    if not rows:
        raise SchemaError("no image has captions that mention some of the words and not others")
    return pd.DataFrame(rows)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles: "A sandal." and "sandal" are the same answer."""
    words = re.sub(r"[^\w\s/-]", " ", str(text).lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def correct(answers: Sequence[str], predicted: Sequence[str]) -> np.ndarray:
    """Exact match after :func:`normalize_answer`, per question."""
    if len(answers) != len(predicted):
        raise SchemaError(f"got {len(predicted)} predicted answers for {len(answers)} questions")
    return np.asarray([normalize_answer(a) == normalize_answer(p) for a, p in zip(answers, predicted)])


def majority_answers(train: pd.DataFrame, test: pd.DataFrame, by: str = "template") -> list[str]:
    """Each test question answered with the most common training answer of its ``template`` (the
    baseline), or of its exact ``question`` (a blind model's prior: is a dog usually there when asked?).
    Ties go to the alphabetically first answer; a question never seen in training falls back to its template's.
    """

    def prior(column: str) -> dict[str, str]:
        top = lambda a: min(a.value_counts().loc[lambda c: c == c.max()].index)  # noqa: E731
        return train.groupby(column)["answer"].agg(top).to_dict()

    templates = prior("template")
    missing = sorted(set(test["template"]) - set(templates))
    if missing:
        raise SchemaError(f"template(s) {missing} have no training questions")
    exact = prior(by) if by != "template" else {}
    return [exact.get(q, templates[t]) for q, t in zip(test[by], test["template"])]
