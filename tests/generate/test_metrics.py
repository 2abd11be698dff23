"""Caption and transcript metrics against published or hand-derived reference values."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from tessera.errors import SchemaError
from tessera.generate.metrics import (
    bleu_statistics,
    caption_scores,
    consensus_captions,
    corpus_bleu4,
    normalize_transcript,
    score_tokenized,
    tokenize,
    word_error_rate,
    word_errors,
)

# NLTK's documentation example (nltk.translate.bleu_score): sentence_bleu = 0.5045..., corpus_bleu = 0.5920...
H1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
R1 = [
    "It is a guide to action that ensures that the military will forever heed Party commands",
    "It is the guiding principle which guarantees the military forces always being under the command of the Party",
    "It is the practical guide for the army always to heed the directions of the party",
]
H2 = "he read the book because he was interested in world history"
R2 = ["he was interested in world history because he read the book"]


def test_bleu4_reproduces_nltks_documented_values():
    assert score_tokenized([R1], [H1]).bleu4 == pytest.approx(0.5045666840058485, abs=1e-9)
    assert score_tokenized([R1, R2], [H1, H2]).bleu4 == pytest.approx(0.5920778868801042, abs=1e-9)


def test_cider_d_matches_a_hand_computed_corpus():
    # Two images with one one-word reference each: every unigram has df 1, idf log(2); bigrams and up are
    # empty, so CIDEr-D = 10 * (1 + 0 + 0 + 0) / 4 for an exact match, and a doubled word halves the
    # unigram cosine and pays the length penalty exp(-1 / (2 * 6^2)).
    s = score_tokenized([["dog"], ["cat"]], ["dog dog", "cat"])
    assert s.cider_per_row == pytest.approx([10 * 0.5 * math.exp(-1 / 72) / 4, 2.5])
    assert s.cider == pytest.approx(s.cider_per_row.mean())
    assert score_tokenized([["dog"], ["cat"]], ["cat", "dog"]).cider == 0.0


def test_weighted_corpus_bleu_equals_pycocoevalcap_on_resamples():
    refs = [[tokenize(r) for r in R1], [tokenize(r) for r in R2], ["a dog runs on the grass", "a brown dog runs"]]
    cands = [tokenize(H1), tokenize(H2), "a dog runs in the grass"]
    stats = bleu_statistics(refs, cands)
    assert corpus_bleu4(stats)[0] == pytest.approx(score_tokenized(refs, cands).bleu4, rel=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.integers(0, 3, 3)
        expected = score_tokenized([refs[i] for i in idx], [cands[i] for i in idx]).bleu4
        assert corpus_bleu4(stats, np.bincount(idx, minlength=3))[0] == pytest.approx(expected, rel=1e-12)


# Stanford PTBTokenizer (as the COCO code runs it), lower-cased, punctuation removed.
PTB = {
    "A dog's ball isn't red.": "a dog 's ball is n't red",
    'A "big" dog (brown) runs; fast!': "a big dog -lrb- brown -rrb- runs fast",
    "We cannot see 1,000 dogs at 5:30 in the U.S. flag": "we can not see 1,000 dogs at 5:30 in the u.s. flag",
    "A child in a pink dress is climbing up a set of stairs in an entry way .": (
        "a child in a pink dress is climbing up a set of stairs in an entry way"
    ),
    "rock-climbing -- wow...": "rock-climbing wow",
}


@pytest.mark.parametrize("text", PTB)
def test_tokenize_gives_ptbs_tokens(text):
    assert tokenize(text) == PTB[text]


@pytest.mark.realdata
@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer is a Java program; no java here")
def test_tokenize_equals_ptbtokenizer_on_every_flickr_caption(shared_data):
    pd = pytest.importorskip("pandas")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = pd.read_csv(shared_data / "flickr8k_1k" / "captions.csv")["caption"].tolist() + list(PTB)
    ptb = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    differ = [(c, ptb[i][0], tokenize(c)) for i, c in enumerate(captions) if ptb[i][0] != tokenize(c)]
    assert not differ, differ[:5]


def test_caption_scores_tokenise_first_and_check_their_input():
    raw = caption_scores([["A dog runs on the grass."]], ["a dog runs on the grass"])
    assert raw.bleu4 == pytest.approx(1.0)
    with pytest.raises(SchemaError, match="2 generated texts but 1"):
        caption_scores([["a"]], ["a", "b"])
    with pytest.raises(SchemaError, match="row 0: references must be a non-empty list"):
        caption_scores(["a dog"], ["a dog"])


def test_consensus_caption_is_the_one_the_others_agree_with():
    dogs = ["a black dog runs on the grass", "a dog runs on the grass", "two men play chess in a park", "a dog runs"]
    chess = ["two men play chess", "men at a table", "two men play chess in a park outside"]
    assert consensus_captions([dogs, chess, ["only one"]]) == [1, 0, 0]


def test_word_error_rate_normalises_whispers_spelling():
    assert normalize_transcript(" Two.") == "two" and normalize_transcript("7!") == "seven"
    assert word_error_rate(["two", "seven"], ["Two.", "7"]) == 0.0
    # one substitution and one insertion over four reference words
    assert word_error_rate(["one two", "three four"], ["one too", "three four five"]) == pytest.approx(0.5)
    assert word_errors(["one two"], [""]).tolist() == [[2.0, 2.0]]
    with pytest.raises(SchemaError, match="reference 0 has no words"):
        word_error_rate(["..."], ["a"])
