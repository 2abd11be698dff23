"""Does fusion help on AV-MNIST, and how long does the full report take for the 10,000-row test set?

Runs what `tessera compare configs/avmnist_compare.yaml --report ... --group speaker` runs:
trains the image-only and audio-only baselines and the fusion model under one budget
(configs/avmnist_compare.yaml), then evaluates the fusion model on the whole test split
(bootstrap CIs, per-class metrics, calibration, the paired gain over the best unimodal model,
removal drops and Shapley values per modality, missing-modality and noise robustness curves,
per-speaker fairness, worst examples) and writes the JSON + HTML report. Training is timed
apart from the report: ``report_seconds`` is evaluation + writing only. The HTML is then
opened in headless Chromium (screenshot + DOM check) when Chromium is installed.

Run: ``python benchmarks/evaluation.py`` (about 10 minutes on 2 cores).
Writes benchmarks/results/evaluation.json and the report beside it (evaluation_report.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TESSERA_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("TESSERA_PROGRESS", "0")

from tessera.config import load_fit_config, resolve_data  # noqa: E402
from tessera.evaluate.report import SECTIONS, write_report  # noqa: E402
from tessera.evaluate.run import evaluate_split  # noqa: E402
from tessera.prepare import prepare  # noqa: E402
from tessera.table import read_table  # noqa: E402
from tessera.workflows.compare import compare_models  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check_in_chromium(html: Path, shot: Path) -> dict:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return {"checked": False, "why": "chromium not installed"}
    with tempfile.TemporaryDirectory() as profile:
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,4000", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=300)
        dom = subprocess.run([*base, "--dump-dom", html.resolve().as_uri()], check=True, capture_output=True,
                             text=True, timeout=300).stdout
    return {
        "checked": True,
        "screenshot_bytes": shot.stat().st_size,
        "sections_in_dom": [s for s in SECTIONS if f'id="{s}"' in dom],
        "sections_missing": [s for s in SECTIONS if f'id="{s}"' not in dom],
        "images": dom.count("<img"),
        "audio_players": dom.count("<audio"),
        "speaker_rows": sum(dom.count(f">{s}<") > 0 for s in ("jackson", "nicolas", "theo", "yweweler", "george", "lucas")),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "avmnist_compare.yaml")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "evaluation.json")
    args = p.parse_args(argv)
    start = time.perf_counter()
    cfg = load_fit_config(args.config)
    cfg.train.device = "cpu"
    table, schema = resolve_data(cfg)
    torch.set_num_threads(1)  # decoding runs in worker processes
    t0 = time.perf_counter()
    data = prepare(table, schema, None, cfg.train)
    pipeline, sources = data.pipeline, data.splits
    decode_seconds = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    comparison = compare_models(pipeline, sources, cfg.model, cfg.train, n_boot=args.n_boot, seed=0,
                                on_model=lambda label, keep: log(f"training {label}"))
    train_seconds = time.perf_counter() - t0
    log("evaluating and writing the report")
    t = read_table(table)
    fusion = comparison.predictors["fusion"]
    report_json = args.output.with_name("evaluation_report.json")
    t0 = time.perf_counter()
    results = evaluate_split(
        fusion.model, fusion.pipeline, sources["test"], t.frame, t.base_dir, group_columns=["speaker"],
        comparison=comparison, n_boot=args.n_boot, seed=0,
        meta={"model": f"fusion ({args.config.name})", "table": t.source, "split": "test"},
    )
    json_path, html_path = write_report(results, report_json)
    report_seconds = time.perf_counter() - t0
    log(f"report in {report_seconds:.1f}s: {html_path}")
    browser = check_in_chromium(html_path, args.output.with_name("evaluation_report.png"))

    gain = comparison.gain
    table_rows = comparison.table.to_dict(orient="records")
    contribution = results.get("contribution") or {}
    summary = {
        "fusion_gain": gain["gain"],
        "fusion_gain_ci_low": gain["low"],
        "fusion_gain_ci_high": gain["high"],
        "fusion_gain_p_value": gain["p_value"],
        "baseline": gain["baseline"],
        "report_seconds": report_seconds,
        "test_rows": results["meta"]["n"],
    }
    out = {
        "benchmark": "evaluation",
        "summary": summary,
        "comparison": {"table": table_rows, "gain": gain},
        "contribution": contribution,
        "fairness": results.get("fairness"),
        "robustness": results.get("robustness"),
        "browser_check": browser,
        "timings": {"decode_seconds": decode_seconds, "train_seconds": train_seconds, "report_seconds": report_seconds,
                    "wall_seconds": time.perf_counter() - start},
        "config": str(args.config.relative_to(REPO)),
        "report": {"json": json_path.name, "html": html_path.name},
        "command": "python benchmarks/evaluation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
                    "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
    }
    print(f"\n{'model':20s} {'accuracy':>9s} {'95% CI':>17s}")
    for r in table_rows:
        print(f"{r['model']:20s} {r['accuracy']:9.4f} {r['accuracy_low']:8.4f}-{r['accuracy_high']:.4f}")
    print(f"\nfusion gain over {gain['baseline']}: {gain['gain']:+.4f} (95% CI {gain['low']:+.4f} to {gain['high']:+.4f}), "
          f"p = {gain['p_value']:.3g} ({gain['method']})")
    print(f"report for {summary['test_rows']} test rows: {report_seconds:.1f} s (training {train_seconds:.0f} s apart)")
    print(f"browser check: {browser}")
    args.output.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
