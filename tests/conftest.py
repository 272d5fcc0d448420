"""Fixtures shared by the tests: the repository root and the real data next to it.

The data directory defaults to ``../shared`` beside the repository and can be
moved with the environment variable FACEMTL_SHARED. Tests that need data that
is absent are skipped with the path they looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
