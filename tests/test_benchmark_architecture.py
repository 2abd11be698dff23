"""benchmarks/architecture.py counts what its docstring says, on a small source tree written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_figures_of_a_small_tree(tmp_path, benchmark_module):
    pkg = tmp_path / "src" / "tessera"
    (pkg / "serve").mkdir(parents=True)
    (pkg / "serve" / "app.py").write_text("x = 1\n" * 7)
    (pkg / "things.py").write_text(
        'THINGS: dict = {}\nOTHER = {"a": 1}\n\n\n'
        "def register(name):\n    def deco(cls):\n        THINGS[name] = cls\n        return cls\n    return deco\n\n\n"
        "def fill():\n    OTHER['b'] = 2\n\n\n"  # filled by key, but not by a decorator: not a registry
        "class Registry:\n    def register(self, name): ...\n    def create(self, name): ...\n"
    )
    body = "\n".join(f"    y = {i}" for i in range(85))
    (pkg / "prep.py").write_text(
        f'"""Says multiclass in a docstring: not a literal."""\n\n\ndef long():\n{body}\n\n\n'
        'def fit_it(t):\n    return Pipeline.fit(t, None) if t == "regression" else None\n'
    )
    (pkg / "pipeline.py").write_text("class Pipeline:\n    def again(self):\n        return Pipeline.fit(1, 2)\n")
    result = benchmark_module("architecture").measure(tmp_path / "src")
    assert result["summary"] == {
        "files_comparing_task_names": 1, "largest_function_lines": 86, "serve_app_lines": 7,
        "registries": 2, "preparation_paths": 1,
    }
    d = result["details"]
    assert d["files_comparing_task_names"] == [str(pkg / "prep.py")]
    assert d["largest_function"]["name"] == "long"
    assert {r["name"] for r in d["registries"]} == {"THINGS", "Registry"}
    assert d["preparation_paths"][0].endswith("prep.py:fit_it")


def test_the_script_writes_its_json(tmp_path):
    out = tmp_path / "architecture.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "architecture.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"files_comparing_task_names", "largest_function_lines", "serve_app_lines", "registries", "preparation_paths"}
    assert "largest_function_lines" in proc.stdout
