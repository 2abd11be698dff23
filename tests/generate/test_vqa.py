"""Templated questions from labels and captions, answer matching and the majority baseline."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.errors import SchemaError
from tessera.generate.vqa import class_questions, correct, majority_answers, normalize_answer, word_questions


def test_class_questions_ask_what_and_yes_no_about_a_true_or_other_class():
    frame = pd.DataFrame({"image": [f"{i}.png" for i in range(40)], "label": ["Sandal", "Bag"] * 20, "split": "train"})
    q = class_questions(frame, "image", "label", seed=0)
    assert len(q) == 80 and set(q["template"]) == {"class", "is_this_class"}
    what = q[q["template"] == "class"]
    assert (what["answer"] == what["label"].str.lower()).all()
    yes_no = q[q["template"] == "is_this_class"]
    asked = yes_no["question"].str.extract(r"Is this a (\w+)\?")[0]
    assert ((asked == yes_no["label"].str.lower()) == (yes_no["answer"] == "yes")).all()
    assert 5 < (yes_no["answer"] == "yes").sum() < 35
    with pytest.raises(SchemaError, match="at least two classes"):
        class_questions(frame.assign(label="Bag"), "image", "label")


def test_word_questions_are_balanced_and_follow_the_captions():
    frame = pd.DataFrame(
        {
            "image": ["a.jpg"] * 2 + ["b.jpg"] * 2,
            "caption": ["A dog runs on the grass .", "Two dogs play", "A man rides a bicycle .", "a cyclist on a road"],
            "split": ["train", "train", "test", "test"],
        }
    )
    q = word_questions(frame, "image", "caption", per_image=2, seed=0)
    assert (q["answer"] == "yes").sum() == (q["answer"] == "no").sum() == 4
    yes_a = set(q[(q["image"] == "a.jpg") & (q["answer"] == "yes")]["question"])
    assert yes_a == {"Is there a dog in the picture?", "Is there grass in the picture?"}
    assert set(q[q["image"] == "b.jpg"]["split"]) == {"test"}
    no_b = q[(q["image"] == "b.jpg") & (q["answer"] == "no")]["question"]
    assert not no_b.str.contains("bike|street").any()


def test_answers_match_after_normalising_and_the_majority_is_per_template():
    assert normalize_answer("A Sandal.") == "sandal" and correct(["yes", "ankle boot"], ["Yes!", "boot"]).tolist() == [
        True,
        False,
    ]
    train = pd.DataFrame(
        {"template": ["t", "t", "t", "u"], "question": ["q1", "q1", "q2", "q3"], "answer": ["no", "no", "yes", "bag"]}
    )
    test = pd.DataFrame({"template": ["t", "t", "u"], "question": ["q2", "q9", "q3"]})
    assert majority_answers(train, test) == ["no", "no", "bag"]
    assert majority_answers(train, test, by="question") == ["yes", "no", "bag"]
    with pytest.raises(SchemaError, match="no training questions"):
        majority_answers(train, test.assign(template="v"))
