"""Every command the README shows runs as written (issue 18: its examples named files nobody had).

Two tests walk the README's ```bash blocks. The quick one parses every ``tessera`` command
line with the real command-line interface (no command runs), so a renamed option or
subcommand fails here. The slow one runs the commands, in order, in a copy of ``configs/``
with the sample data that ``tessera data examples`` writes, plus the README's Python block;
the commands it does not run are listed in ``NOT_RUN`` with the reason and the test that
covers them instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from tessera.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Commands that start with these are not run by the slow walk; each is still parsed, when it is a
# tessera command, by test_every_tessera_command_parses.
NOT_RUN = {
    "python3 -m venv": "installs the package (the environment running this test is that install)",
    ".venv/bin/pip install": "installs the package",
    ".venv/bin/python -m pytest": "the whole suite (this test is part of it)",
    "tessera generate": "minutes of diffusion training; tests/generate covers it",
    "tessera compare configs/avmnist_compare.yaml": "builds AV-MNIST and trains three models (minutes); tests/workflows and benchmarks/avmnist.py cover it",
    "tessera serve": "a server and its clients; tests/serve covers them",
    "curl": "needs the server",
    "tessera monitor": "needs the server",
    "tessera feedback": "needs the server's feedback database",
    "tessera fit --finetune": "needs feedback.parquet from the server; tests/test_finetune covers fine-tuning",
    "tessera fit configs/quickstart.yaml --preset best": "trains many models for up to its 30-minute limit; "
    "tests/test_cli.py and tests/workflows/test_workflows_best.py cover preset best",
}
RAY = "--runner ray"  # optional extra (tessera[ray]); tests/scale covers the Ray runner


def readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    """The command lines of the README's bash blocks, without comments, split at ``&&``."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            command: list[str] = []
            for word in [*words, "&&"]:
                if word == "&&":
                    commands.append(shlex.join(command))
                    command = []
                else:
                    command.append(word)
    return commands


def tessera_args(command: str) -> list[str] | None:
    """The arguments of a ``tessera`` command (with or without env assignments and .venv/bin/), else None."""
    words = [w for w in shlex.split(command) if not re.match(r"^[A-Z_]+=", w)]
    if words and words[0] in ("tessera", ".venv/bin/tessera"):
        return words[1:]
    return None


def parse(command: Any, args: list[str], parent: Any = None) -> None:
    """Parse ``args`` as click would before running anything: options, arguments, subcommands.

    (Typer vendors its own click, so groups are told by what they can do, not by class.)
    """
    ctx = command.make_context(command.name or "tessera", list(args), parent=parent)
    if hasattr(command, "get_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if rest:
            sub = command.get_command(ctx, rest[0])
            assert sub is not None, f"no command {rest[0]!r} under {ctx.command_path!r}"
            parse(sub, rest[1:], ctx)


def test_readme_has_commands():
    commands = readme_commands()
    assert len(commands) > 20, commands
    assert any(c.startswith("tessera data examples") for c in commands)


@pytest.mark.parametrize("command", [c for c in readme_commands() if tessera_args(c) is not None])
def test_every_tessera_command_parses(command):
    parse(typer.main.get_command(app), tessera_args(command))


@pytest.mark.slow
@pytest.mark.realdata
def test_readme_commands_run_as_written(shared_data, tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    env = {
        **os.environ, "TESSERA_DATA": str(shared_data), "TESSERA_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "TESSERA_PROGRESS": "0",
    }
    ran = []
    for command in readme_commands():
        if any(command.startswith(prefix) for prefix in NOT_RUN) or RAY in command or command.startswith("export "):
            continue
        args = tessera_args(command)
        assert args is not None, f"the README runs {command!r}, which this test does not know how to run"
        if not args:
            continue  # the main job: benchmarks/first_run.py times it, tests/test_quickstart.py runs it small
        result = subprocess.run(
            [sys.executable, "-m", "tessera.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        ran.append(command)
        if args[:2] == ["data", "examples"]:
            # the README's Python block runs against the sample files as soon as they exist
            code = readme_blocks("python")[0]
            result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README's Python block:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "runs" / "products-index").is_dir()
    assert any(c.startswith("tessera search") for c in ran) and any(c.startswith("tessera report") for c in ran)
