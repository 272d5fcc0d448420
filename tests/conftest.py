"""Fixtures shared by the tests: the repository root and the real data next to it.

The data directory defaults to ``../shared`` beside the repository and can be
moved with the environment variable FACEMTL_SHARED. Tests that need data that
is absent are skipped with the path they looked for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs", "profiles", "src")
SHARED = Path(os.environ.get("FACEMTL_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED}; set FACEMTL_SHARED to the directory with data/ and models/")
    return SHARED


@pytest.fixture(scope="session")
def utkface_archive(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "UTKFace.tar.gz"
    if not path.is_file():
        pytest.skip(f"UTKFace archive not found at {path}")
    return path


@pytest.fixture(scope="session")
def dyadic_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "dyadic"
    if not (path / "recordings.csv").is_file():
        pytest.skip(f"dyadic sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def blazeface_dir(shared_dir: Path) -> Path:
    path = shared_dir / "models" / "blazeface"
    if not (path / "blazeface.pth").is_file():
        pytest.skip(f"BlazeFace weights not found at {path}")
    return path


def copy_workflow(destination: Path) -> Path:
    """Copy the workflow into ``destination`` and return it, so runs never touch the repository's results."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def run_snakemake(workdir: Path, *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` and return the finished process with its captured output."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *arguments], cwd=workdir, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def workdir(tmp_path) -> Path:
    return copy_workflow(tmp_path / "workflow")


@pytest.fixture(scope="session")
def data_overrides(utkface_archive, dyadic_dir, blazeface_dir) -> list[str]:
    """Return the ``--config`` arguments that point the workflow at the real data."""
    return ["--config", f"utkface={utkface_archive}", f"dyadic={dyadic_dir}", f"blazeface={blazeface_dir}"]
