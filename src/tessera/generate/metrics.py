"""How good is generated text: BLEU-4 and CIDEr for captions (the COCO caption code), word error rate for transcripts (jiwer).

The scorers are the reference implementations: ``pycocoevalcap``'s ``Bleu`` and ``Cider``
(the code behind the COCO captioning leaderboard; its ``Cider`` is CIDEr-D: clipped n-gram
counts, a Gaussian length penalty, x10) and ``jiwer``'s WER. Only two things are Tessera's:

* **Tokenising.** The COCO code tokenises with Stanford's PTBTokenizer, a Java program,
  lower-casing and dropping punctuation. :func:`tokenize` does the same in Python, so
  scoring needs no Java: it gives PTBTokenizer's output for every one of Flickr8k-1k's
  5,000 captions (a test checks this where Java is installed).
* **Per-row CIDEr with a fixed IDF.** CIDEr weighs n-grams by their document frequency
  over the whole test set's references; the corpus score is the mean of per-image scores.
  A bootstrap interval resamples those per-image scores with the IDF of the full test
  set (resampling images changes the IDF a little; recomputing it per resample costs a
  full CIDEr run each), which is the usual way such intervals are drawn.

Transcripts are compared after :func:`normalize_transcript` (lower case, no punctuation,
digits spelt out: Whisper writes "Two." or "2" for a spoken "two").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tessera.errors import SchemaError

# PTBTokenizer's tokens that the COCO code removes afterwards; '"' stands for the `` and '' PTB turns quotes into.
PUNCTUATION = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
    '"',
}
TOKEN = re.compile(
    r"""
    \.\.\. | --                       # ellipsis, dash
  | n't\b | '(?:s|re|ve|ll|d|m)\b     # clitics, split off as PTB does
  | \w+(?:\.\w+)+\.?                  # acronyms: u.s.
  | \w+(?:[-&/]\w+|[.,:]\d+)*         # words (hyphenated) and numbers (1,000 5:30 2.5)
  | \S                                # any other character on its own
    """,
    re.VERBOSE,
)
# PTB names brackets; lower-cased they no longer match the COCO list above, so they stay (as in COCO's own scores).
BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def tokenize(text: str) -> str:
    """A caption as the COCO evaluation scores it: PTB tokens, lower case, punctuation removed, space-joined."""
    text = text.lower().replace("\n", " ")
    text = re.sub(r"\b(can)(not)\b", r"\1 \2", text)
    text = re.sub(r"(\w)(n't)\b", r"\1 \2", text)
    return " ".join(BRACKETS.get(t, t) for t in TOKEN.findall(text) if t not in PUNCTUATION)


@dataclass
class CaptionScores:
    """Corpus BLEU-1..4 and CIDEr-D, and each row's CIDEr-D and sentence BLEU-4."""

    bleu: list[float]  # BLEU-1 .. BLEU-4, corpus level
    cider: float
    cider_per_row: np.ndarray
    bleu4_per_row: np.ndarray

    @property
    def bleu4(self) -> float:
        return self.bleu[3]


def _check(references: Sequence[Sequence[str]], candidates: Sequence[str]) -> None:
    if len(references) != len(candidates):
        raise SchemaError(f"got {len(candidates)} generated texts but {len(references)} sets of references")
    if not len(candidates):
        raise SchemaError("nothing to score: no generated texts")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not len(refs):
            raise SchemaError(f"row {i}: references must be a non-empty list of texts, got {refs!r}")


def score_tokenized(references: Sequence[Sequence[str]], candidates: Sequence[str]) -> CaptionScores:
    """pycocoevalcap's BLEU and CIDEr-D on texts already tokenised (space-separated tokens)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    _check(references, candidates)
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    bleu, bleu_rows = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_rows = Cider().compute_score(gts, res)
    return CaptionScores(
        [float(b) for b in bleu], float(cider), np.asarray(cider_rows, np.float64), np.asarray(bleu_rows[3], np.float64)
    )


BLEU_STATS = 10  # per row: hypothesis length, closest reference length, 4 n-gram counts, 4 clipped matches


def bleu_statistics(references: Sequence[Sequence[str]], candidates: Sequence[str]) -> np.ndarray:
    """Each row's BLEU sufficient statistics ``(n, 10)`` from pycocoevalcap's own counting (tokenised texts).

    Corpus BLEU sums them over rows, so :func:`corpus_bleu4` scores any resample of rows at once.
    """
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    _check(references, candidates)
    out = np.zeros((len(candidates), BLEU_STATS))
    for i, (refs, cand) in enumerate(zip(references, candidates)):
        comps = cook_test(cand, cook_refs(list(refs)))
        closest = min((abs(length - comps["testlen"]), length) for length in comps["reflen"])[1]
        out[i] = [comps["testlen"], closest, *comps["guess"], *comps["correct"]]
    return out


def corpus_bleu4(stats: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Corpus BLEU-4 as pycocoevalcap computes it (same smoothing constants), for each row of ``counts``
    ``(B, n)`` (how often each row is drawn; None: every row once, ``B = 1``)."""
    counts = np.ones((1, len(stats))) if counts is None else np.atleast_2d(counts)
    total = counts @ stats  # (B, 10)
    tiny, small = 1e-15, 1e-9
    precision = np.prod((total[:, 6:10] + tiny) / (total[:, 2:6] + small), axis=1) ** 0.25
    ratio = (total[:, 0] + tiny) / (total[:, 1] + small)
    return np.where(ratio < 1, precision * np.exp(1 - 1 / ratio), precision)


def caption_scores(references: Sequence[Sequence[str]], candidates: Sequence[str]) -> CaptionScores:
    """BLEU and CIDEr-D of one generated text per row against that row's references (raw text; tokenised here)."""
    _check(references, candidates)
    return score_tokenized([[tokenize(r) for r in refs] for refs in references], [tokenize(c) for c in candidates])


def consensus_captions(captions: Sequence[Sequence[str]]) -> list[int]:
    """For each image, the index of its caption that agrees most with its other captions: highest
    CIDEr-D against them, the IDF taken over all images at once (Devlin et al., 2015, re-rank a
    retrieved image's captions by consensus; a single annotator's wording can be idiosyncratic)."""
    refs, cands, owner = [], [], []
    for i, caps in enumerate(captions):
        if len(caps) < 2:
            continue
        for j, c in enumerate(caps):
            refs.append([r for k, r in enumerate(caps) if k != j])
            cands.append(c)
            owner.append(i)
    best = [0] * len(captions)
    if not cands:
        return best
    scores = caption_scores(refs, cands).cider_per_row
    top: dict[int, float] = {}
    for i, c_index, score in zip(owner, (j for caps in captions if len(caps) >= 2 for j in range(len(caps))), scores):
        if score > top.get(i, -1.0):
            top[i], best[i] = score, c_index
    return best


# -- transcripts ---------------------------------------------------------------------------------
def normalize_transcript(text: str) -> str:
    """Lower case, digits spelt out one by one, punctuation dropped, single spaces."""
    text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text.lower())
    return " ".join(re.sub(r"[^\w\s']", " ", text).split())


def word_errors(references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True) -> np.ndarray:
    """Each row's word errors (substitutions + deletions + insertions, jiwer) and reference length, ``(n, 2)``.

    Rows rather than a total, so a bootstrap can resample them; :func:`word_error_rate` sums them.
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise SchemaError(f"got {len(hypotheses)} transcripts but {len(references)} references")
    out = np.zeros((len(references), 2))
    for i, (r, h) in enumerate(zip(references, hypotheses)):
        ref, hyp = (normalize_transcript(r), normalize_transcript(h)) if normalize else (r, h)
        if not ref.strip():
            raise SchemaError(f"reference {i} has no words; word error rate is defined over reference words")
        o = jiwer.process_words(ref, hyp)
        out[i] = (o.substitutions + o.deletions + o.insertions, len(ref.split()))
    return out


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True) -> float:
    """Corpus WER: all word errors over all reference words, after :func:`normalize_transcript` unless told not to."""
    counts = word_errors(references, hypotheses, normalize=normalize)
    return float(counts[:, 0].sum() / counts[:, 1].sum())
