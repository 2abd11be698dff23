"""How expensive is change? Five structural figures of ``src/``, read from the syntax tree, not by eye.

Run from the repository root (``python benchmarks/architecture.py``); writes
``benchmarks/results/architecture.json`` and prints a table. Every figure comes from
Python's :mod:`ast` over the files under ``src/``, so anyone can re-run it and get the same
numbers for the same tree. The ``summary`` figures and their goals (issue 13):

* ``files_comparing_task_names`` (goal 0): files under ``src/`` outside ``tasks/`` that hold a
  string literal equal to a task name. The names are those registered in the task registry
  (``tessera.tasks``, read by importing it) when that package exists, else ``multiclass``,
  ``multilabel`` and ``regression``. A literal is a whole string constant, so a docstring that
  merely mentions a task does not count.
* ``largest_function_lines`` (goal <= 80): the longest function or method (nested ones
  counted on their own as well as inside their parent), from its ``def`` line to its last line.
* ``serve_app_lines`` (goal <= 250): lines of ``src/tessera/serve/app.py``.
* ``registries`` (goal 1): the ways components are registered by name. Counted are
  (a) module-level dicts that a decorator fills, i.e. a dict bound at module level that some
  function of the same module assigns into by key (``D[name] = cls``) while that function, or
  the function it is nested in, returns a function or its own argument (the decorator shape);
  and (b) classes that define both ``register`` and ``create`` methods (a registry class counts
  once however many instances it has).
* ``preparation_paths`` (goal 1): functions under ``src/`` (outside ``pipeline.py``, which
  defines it) that call ``Pipeline.fit``: each is a separate way from a table to fitted
  preprocessors.

``details`` lists what each figure counted (file names, function names and lengths, the
registries found) and every function over 80 lines.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DEFAULT_TASKS = ("multiclass", "multilabel", "regression")
LONG = 80


def python_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def rel(path: Path) -> str:
    """A path as the repository names it (absolute for a tree outside it)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# -- task names ------------------------------------------------------------------------------
def task_names(src: Path) -> tuple[list[str], str]:
    """Registered task names and where they came from: the task registry if there is one."""
    if not (src / "tessera" / "tasks").is_dir():
        return list(DEFAULT_TASKS), "default (no tessera/tasks package)"
    sys.path.insert(0, str(src))
    try:
        import tessera.tasks as tasks  # noqa: PLC0415 - only when the package exists
    except Exception as e:  # noqa: BLE001 - a broken package is reported, not fatal
        return list(DEFAULT_TASKS), f"default (importing tessera.tasks failed: {type(e).__name__}: {e})"
    for attr in ("TASKS", "REGISTRY", "registry"):
        registry = getattr(tasks, attr, None)
        if registry is None:
            continue
        names = registry.known() if callable(getattr(registry, "known", None)) else list(registry)
        if names:
            return sorted(map(str, names)), f"tessera.tasks.{attr}"
    return list(DEFAULT_TASKS), "default (no registry found in tessera.tasks)"


def files_comparing(src: Path, names: list[str]) -> list[str]:
    wanted = set(names)
    out = []
    for path in python_files(src):
        if "tasks" in path.relative_to(src).parts[:-1]:
            continue
        tree = parse(path)
        if any(isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in wanted for n in ast.walk(tree)):
            out.append(rel(path))
    return out


# -- function lengths ---------------------------------------------------------------------------
def functions(src: Path) -> list[dict]:
    """Every function and method with its qualified name and length in lines."""
    found = []

    def visit(node: ast.AST, prefix: str, path: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append({"file": rel(path), "name": name, "lines": child.end_lineno - child.lineno + 1})
                visit(child, name + ".", path)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", path)
            else:
                visit(child, prefix, path)

    for path in python_files(src):
        visit(parse(path), "", path)
    return sorted(found, key=lambda f: -f["lines"])


# -- registries -----------------------------------------------------------------------------------
def _module_dicts(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        is_dict = isinstance(value, ast.Dict) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict"
        )
        if target and is_dict:
            names.add(target)
    return names


def _decorator_shaped(fn: ast.FunctionDef) -> bool:
    """Returns a nested function, or one of its own parameters (``return cls``)."""
    params = {a.arg for a in fn.args.args}
    nested = {n.name for n in fn.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Name) and node.value.id in params | nested:
            return True
    return False


def registries(src: Path) -> list[dict]:
    found = []
    for path in python_files(src):
        tree = parse(path)
        dicts = _module_dicts(tree)
        filled: set[str] = set()
        for top in ast.walk(tree):
            if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) or not _decorator_shaped(top):
                continue
            for node in ast.walk(top):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in dicts:
                            filled.add(t.value.id)
        found += [{"file": rel(path), "kind": "decorator-filled dict", "name": name} for name in sorted(filled)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                methods = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                if {"register", "create"} <= methods:
                    found.append({"file": rel(path), "kind": "registry class", "name": node.name})
    return found


# -- preparation paths ----------------------------------------------------------------------------
def preparation_paths(src: Path) -> list[str]:
    """Functions calling ``Pipeline.fit`` (qualified names), outside the module that defines it."""
    out = []
    for f_path in python_files(src):
        if f_path.name == "pipeline.py" and f_path.parent.name == "tessera":
            continue

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    calls = [
                        n for n in ast.walk(child)
                        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "fit"
                        and isinstance(n.func.value, ast.Name) and n.func.value.id == "Pipeline"
                    ]
                    nested_calls = any(
                        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n is not child
                        and any(c in ast.walk(n) for c in calls)
                        for n in ast.walk(child)
                    )
                    if calls and not nested_calls:
                        out.append(f"{rel(f_path)}:{name}")
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(parse(f_path), "")
    return out


def measure(src: Path = SRC) -> dict:
    names, names_from = task_names(src)
    comparing = files_comparing(src, names)
    funcs = functions(src)
    regs = registries(src)
    prep = preparation_paths(src)
    app = src / "tessera" / "serve" / "app.py"
    app_lines = len(app.read_text().splitlines()) if app.is_file() else 0
    largest = funcs[0] if funcs else {"name": None, "file": None, "lines": 0}
    return {
        "benchmark": "architecture",
        "summary": {
            "files_comparing_task_names": len(comparing),
            "largest_function_lines": largest["lines"],
            "serve_app_lines": app_lines,
            "registries": len(regs),
            "preparation_paths": len(prep),
        },
        "goals": {
            "files_comparing_task_names": "0", "largest_function_lines": "<= 80", "serve_app_lines": "<= 250",
            "registries": "1", "preparation_paths": "1",
        },
        "details": {
            "task_names": names,
            "task_names_from": names_from,
            "files_comparing_task_names": comparing,
            "largest_function": largest,
            "functions_over_80_lines": [f for f in funcs if f["lines"] > LONG],
            "registries": regs,
            "preparation_paths": prep,
            "python_files": len(python_files(src)),
            "source_lines": sum(len(p.read_text().splitlines()) for p in python_files(src)),
        },
    }


def print_table(result: dict) -> None:
    s, goals = result["summary"], result["goals"]
    print(f"{'figure':<30} {'value':>7}  goal")
    for k, v in s.items():
        print(f"{k:<30} {v:>7}  {goals[k]}")
    d = result["details"]
    print(f"\nlargest function: {d['largest_function']['name']} ({d['largest_function']['file']})")
    print(f"task names ({d['task_names_from']}): {', '.join(d['task_names'])}")
    for f in d["functions_over_80_lines"]:
        print(f"  over {LONG} lines: {f['lines']:>4}  {f['file']}:{f['name']}")
    for r in d["registries"]:
        print(f"  registry: {r['kind']:<22} {r['file']}:{r['name']}")
    for p in d["preparation_paths"]:
        print(f"  preparation path: {p}")
    for f in d["files_comparing_task_names"]:
        print(f"  compares task names: {f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "architecture.json")
    args = ap.parse_args()
    result = measure(args.src.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
