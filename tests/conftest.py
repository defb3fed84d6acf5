"""Shared fixtures: where the real-face datasets are, and skips when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    return Path(os.environ.get("LATTICELOCK_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets() -> Path:
    root = datasets_dir()
    if not (root / "lfw").is_dir():
        pytest.skip(f"real-face datasets not found at {root} (set LATTICELOCK_DATASETS)")
    return root
