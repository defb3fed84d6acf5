"""Shared fixtures: where the real-face datasets are, and skips when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latticelock.tools.datasets import ENV, checkout_default, find_datasets


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The datasets folder as the commands find it (`$LATTICELOCK_DATASETS`, else ../shared/datasets)."""
    root = find_datasets()
    if root is None or not (root / "lfw").is_dir():
        where = os.environ.get(ENV) or checkout_default()
        pytest.skip(f"real-face datasets with lfw/ not found at {where} (set {ENV})")
    return root
