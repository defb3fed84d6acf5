"""Who may import whom (README, "Layout"): checked on the source, so a new import cannot slip in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("kernels", "models", "device", "firmware_bridge", "tools")
# The device uses the kernels' safe layer only: never hazmat, never the schemes' internals.
DEVICE_KERNELS = {"latticelock.kernels.recipe", "latticelock.kernels.params", "latticelock.kernels.errors",
                  "latticelock.kernels.families", "latticelock.kernels.record"}
ALLOWED = {
    "kernels": ("kernels",),
    "models": ("models",),
    "firmware_bridge": ("firmware_bridge",),
    "device": ("device", "models", "kernels", "firmware_bridge"),
    "tools": FOLDERS,
}


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [n for n in names if n.startswith("latticelock.")]


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_folders_import_only_what_the_layout_allows(folder):
    bad = []
    for path in sources(folder):
        for name in imports_of(path):
            owner = name.split(".")[1]
            if owner not in ALLOWED[folder]:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, "imports across the layout's rules:\n" + "\n".join(bad)


def test_the_device_uses_only_the_kernels_recipe():
    bad = []
    for path in sources("device"):
        for name in imports_of(path):
            if name.startswith("latticelock.kernels") and name != "latticelock.kernels":
                module = ".".join(name.split(".")[:3])
                if module not in DEVICE_KERNELS:
                    bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, "device code reaching below the kernels recipe:\n" + "\n".join(bad)


def test_the_rule_catches_a_forbidden_import(tmp_path):
    planted = tmp_path / "loop.py"
    planted.write_text("from latticelock.kernels.hazmat.cvp import cvp_decode\nimport latticelock.kernels.recipe\n")
    assert imports_of(planted) == ["latticelock.kernels.hazmat.cvp", "latticelock.kernels.hazmat.cvp.cvp_decode",
                                   "latticelock.kernels.recipe"]
