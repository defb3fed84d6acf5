"""Where the face datasets are: the one resolver every command and test uses.

Order: an explicit flag (`--datasets DIR`), then `$LATTICELOCK_DATASETS`, then `../shared/datasets`
beside a source checkout (the development layout). An installed wheel has no checkout around it,
so there the flag or the variable is needed; a missing folder is a clear error.
"""

from __future__ import annotations

import os
from pathlib import Path

from latticelock.tools.errors import ToolsError

ENV = "LATTICELOCK_DATASETS"


def checkout_default() -> Path | None:
    """`../shared/datasets` beside the source checkout this package runs from, if it is one."""
    import latticelock.tools as tools

    # An editable install maps latticelock.tools to <checkout>/tools; a wheel puts it in site-packages.
    checkout = Path(tools.__file__).resolve().parent.parent
    if not (checkout / "pyproject.toml").is_file():
        return None
    return checkout.parent / "shared" / "datasets"


def find_datasets(flag: str | Path | None = None) -> Path | None:
    """The datasets folder if one is configured and exists, else None (tests skip on None)."""
    configured = flag if flag is not None else (os.environ.get(ENV) or checkout_default())
    if configured is None:
        return None
    path = Path(configured).expanduser()
    return path if path.is_dir() else None


def datasets_dir(flag: str | Path | None = None) -> Path:
    """The datasets folder (flag, then $LATTICELOCK_DATASETS, then ../shared/datasets); ToolsError if absent."""
    found = find_datasets(flag)
    if found is None:
        where = f"{flag}" if flag is not None else (os.environ.get(ENV) or str(checkout_default() or "(no source checkout)"))
        raise ToolsError(f"datasets folder not found: {where}; pass --datasets DIR or set ${ENV}")
    return found


def dataset_path(name: str, flag: str | Path | None = None) -> Path:
    """One dataset inside the folder, e.g. `dataset_path("faces94_subset")`; ToolsError if absent."""
    path = datasets_dir(flag) / name
    if not path.exists():
        raise ToolsError(f"dataset {name!r} not found in {path.parent}")
    return path
