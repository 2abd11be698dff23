"""The first run: how long README command 1's job takes and how much memory it needs.

What is measured: ``tessera`` with no command (the main job, :mod:`tessera.quickstart`), started
as the README starts it, in a fresh process, with the data home ``TESSERA_DATA`` (default
``../shared/data``) and an empty ``TESSERA_CACHE`` (a fresh clone has built nothing yet, so
the job's AV-MNIST table is built from the raw sources inside the timed run; ``--warm`` reuses
one cache for a second, timed run as well). The job runs in a temporary folder, so its
``runs/main-job`` does not land in the checkout.

* ``main_job_seconds``: wall time from starting the process to its exit (goal: under 120 on
  2 idle cores);
* ``peak_memory_mb``: the peak over time of the summed resident memory (RSS) of the job's
  process and all its children (decoding workers), sampled every 0.2 s (goal: under 1,500).
  RSS counts pages a forked worker shares with its parent once in each process, so this is an
  upper bound; ``peak_pss_mb`` (proportional set size, shared pages split between the
  processes sharing them, sampled every 0.5 s) is what the job really holds;
* ``fusion_accuracy`` and ``best_single_input_accuracy``: test accuracies from the job's report
  (``runs/main-job/report.json``), so what the job printed;
* ``cpu_seconds``: user + system time of the job and its children, which on an idle machine is
  close to the wall time of the single-threaded parts; and the load average before and after,
  because on a shared machine the wall time says as much about the neighbours as about the job.

Run (from the repository root): ``.venv/bin/python benchmarks/first_run.py`` -> ``benchmarks/results/first_run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "first_run.json"


class TreeMemory:
    """Samples the summed RSS (and, less often, PSS) of a process and its descendants until stopped."""

    def __init__(self, pid: int, every: float = 0.2, pss_every: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.every, self.pss_every = every, pss_every
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_pss = 0.0
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            want_pss = time.monotonic() - last_pss >= self.pss_every
            for p in procs:
                try:
                    if want_pss:
                        info = p.memory_full_info()
                        rss, pss = rss + info.rss, pss + info.pss
                    else:
                        rss += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_processes = max(self.peak_processes, len(procs))
            if want_pss:
                self.peak_pss, last_pss = max(self.peak_pss, pss), time.monotonic()
            self._stop.wait(self.every)


def run_job(cache: Path, workdir: Path, extra: list[str]) -> dict[str, Any]:
    """Run the main job once in a fresh process; wall time, memory, CPU time and what it printed."""
    env = {
        **os.environ,
        "TESSERA_CACHE": str(cache),
        "TESSERA_DATA": os.environ.get("TESSERA_DATA", str(REPO.parent / "shared" / "data")),
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", *extra], cwd=workdir, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    with TreeMemory(proc.pid) as memory:
        output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"the main job failed (exit {proc.returncode}):\n{output}")
    report = json.loads((workdir / "runs" / "main-job" / "report.json").read_text())
    table = report["comparison"]["table"]
    fusion = next(r for r in table if r["model"] == "fusion")
    singles = [r for r in table if r["model"] != "fusion"]
    best = max(singles, key=lambda r: r["accuracy"])
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "peak_rss_mb": round(memory.peak_rss / 2**20),
        "peak_pss_mb": round(memory.peak_pss / 2**20),
        "peak_processes": memory.peak_processes,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "fusion_accuracy": fusion["accuracy"],
        "best_single_input": best["model"],
        "best_single_input_accuracy": best["accuracy"],
        "accuracies": {r["model"]: r["accuracy"] for r in table},
        "gain": report["comparison"]["gain"],
        "dataset": report["meta"]["table"],
        "output": output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", action="store_true", help="Also time a second run that reuses the first run's cache.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("job_args", nargs="*", help="Arguments for `tessera` (none: README command 1 as written).")
    args = parser.parse_args()

    runs = {}
    with tempfile.TemporaryDirectory(prefix="tessera-first-run-") as tmp:
        tmp = Path(tmp)
        runs["cold"] = run_job(tmp / "cache", tmp, args.job_args)
        if args.warm:
            runs["warm"] = run_job(tmp / "cache", tmp, args.job_args)
    for name, r in runs.items():
        print(f"--- {name} run output ---\n{r['output']}")
    cold = runs["cold"]
    summary = {
        "main_job_seconds": cold["seconds"],
        "peak_memory_mb": cold["peak_rss_mb"],
        "peak_pss_mb": cold["peak_pss_mb"],
        "fusion_accuracy": cold["fusion_accuracy"],
        "best_single_input_accuracy": cold["best_single_input_accuracy"],
        "cpu_seconds": cold["cpu_seconds"],
        "load_average": cold["load_average_before"][0],
        "goals_met": {"under_120_seconds": cold["seconds"] < 120, "under_1500_mb": cold["peak_rss_mb"] < 1500,
                      "fusion_beats_each_input": cold["fusion_accuracy"] > cold["best_single_input_accuracy"]},
    }
    result = {
        "summary": summary,
        "command": "tessera " + " ".join(args.job_args) if args.job_args else "tessera (README command 1's job)",
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in runs.items()},
        "output": cold["output"].splitlines(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "note": "cold: an empty TESSERA_CACHE, as after a fresh clone (the job builds its AV-MNIST table first). "
                "Wall times on a shared machine grow with its load; cpu_seconds does much less.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    for name, r in runs.items():
        print(
            f"{name}: {r['seconds']:.0f} s wall ({r['cpu_seconds']:.0f} s CPU), peak RSS {r['peak_rss_mb']} MB "
            f"(PSS {r['peak_pss_mb']} MB), load {r['load_average_before'][0]:.1f} -> {r['load_average_after'][0]:.1f}; "
            f"fusion {r['fusion_accuracy']:.3f} vs {r['best_single_input']} {r['best_single_input_accuracy']:.3f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
