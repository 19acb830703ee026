"""Binder smoke test: a fresh venv built only from binder/ executes every notebook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BINDER_NOTEBOOKS = [
    ROOT / "notebooks" / name
    for name in (
        "01-signaling.ipynb",
        "04-media.ipynb",
        "11-why-wont-it-connect.ipynb",
    )
]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_binder_environment_runs_the_notebooks(tmp_path: Path) -> None:
    assert all(path.exists() for path in BINDER_NOTEBOOKS), BINDER_NOTEBOOKS
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    py = str(bin_dir / "python")
    # what repo2docker does: requirements.txt, then postBuild from the repository root
    _run([py, "-m", "pip", "install", "-q", "setuptools>=77"], ROOT, env, 600)
    _run([py, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], ROOT, env, 900)
    repo = tmp_path / "repo"  # postBuild builds from a copy: never write into the checkout
    shutil.copytree(
        ROOT,
        repo,
        ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__", ".*_cache"),
    )
    _run(["bash", "binder/postBuild"], repo, env, 600)
    versions = _run(
        [py, "-c", "import aiortc, rtclab; print(aiortc.__version__, rtclab.__file__)"],
        tmp_path,
        env,
        120,
    )
    assert versions.startswith("1.16.0") and str(env_dir) in versions, versions
    assert sys.prefix not in versions

    # test_notebooks.py runs every notebook in the development environment; here the ones
    # that reach each part of the stack binder/ has to provide: websockets (01), aiortc, av,
    # numpy and rtclab's QoE tags on every peer's video (04), coturn from apt.txt and the
    # TURN doctor (11). Running all of them twice cost CI ~5 minutes. 09 (~60 s) needs no
    # package beyond 04's: its emulated network and web client are rtclab's own code.
    for notebook in BINDER_NOTEBOOKS:
        work = tmp_path / "run" / notebook.name
        work.parent.mkdir(exist_ok=True)
        shutil.copy(notebook, work)
        _run(
            [str(bin_dir / "jupyter"), "execute", "--timeout=180", "--inplace", work.name],
            work.parent,
            env,
            900,
        )
        assert "all claims hold" in work.read_text(), notebook.name
