"""The one reader of LFW pairs files (View 2 protocol), and their mapping onto embedding rows.

Format: first line `<folds> <pairs per class>`; then, per fold, that many same-person lines
`name i j` followed by as many different-person lines `name1 i name2 j`. Image `i` of `name` is
`name/name_%04d.jpg` in the LFW folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latticelock.tools.embeddings import EmbeddingsFile
from latticelock.tools.errors import ToolsError


@dataclass(frozen=True)
class Pair:
    fold: int
    first: str  # path relative to the LFW folder, e.g. "Name/Name_0001.jpg"
    second: str
    same: bool


def lfw_file(name: str, index: int) -> str:
    """LFW's file name for image `index` of `name`."""
    return f"{name}/{name}_{index:04d}.jpg"


def parse_pair(parts: list[str]) -> tuple[str, str, bool]:
    """(first file, second file, same person) of one pairs-file line split on whitespace: `name i j`
    or `name1 i name2 j`; ValueError for anything else."""
    if len(parts) == 3:
        return lfw_file(parts[0], int(parts[1])), lfw_file(parts[0], int(parts[2])), True
    if len(parts) == 4:
        return lfw_file(parts[0], int(parts[1])), lfw_file(parts[2], int(parts[3])), False
    raise ValueError(f"not a pair: {' '.join(parts)!r}")


def read_pairs(path: str | Path) -> list[Pair]:
    """Every pair of a pairs file, with its fold; ToolsError naming the line for anything malformed."""
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolsError(f"cannot read pairs file {path}: {exc}") from None
    try:
        folds, per_class = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise ToolsError(f"{path}: first line must be '<folds> <pairs per class>'") from None
    if folds < 1 or per_class < 1:
        raise ToolsError(f"{path}: the first line announces {folds} folds of {per_class} pairs per class; both must be >= 1")
    if len(lines) - 1 != folds * 2 * per_class:
        raise ToolsError(f"{path}: expected {folds * 2 * per_class} pairs for {folds} folds, found {len(lines) - 1}")
    pairs = []
    for number, parts in enumerate(lines[1:]):
        try:
            pairs.append(Pair(number // (2 * per_class), *parse_pair(parts)))
        except ValueError:
            raise ToolsError(f"{path}: line {number + 2} is not a pair: {' '.join(parts)!r}") from None
    return pairs


def pair_identities(pairs: list[Pair]) -> frozenset[str]:
    """Every identity the pairs mention (the evaluated ones: calibration must not use them)."""
    return frozenset(f.split("/")[0] for p in pairs for f in (p.first, p.second))


@dataclass(frozen=True)
class PairRows:
    first: np.ndarray  # int rows into the embeddings
    second: np.ndarray
    same: np.ndarray  # bool
    names: frozenset[str]  # every identity the pairs file mentions
    missing: int  # pairs dropped because an image has no embedding


def pair_rows(pairs: list[Pair], data: EmbeddingsFile) -> PairRows:
    """The pairs as rows of `data`; pairs with an image that has no embedding are counted, not kept."""
    index = data.index()
    kept = [(index[p.first], index[p.second], p.same) for p in pairs if p.first in index and p.second in index]
    if not kept:
        raise ToolsError(f"no pair has both embeddings in {data.path}")
    first, second, same = (np.array(column) for column in zip(*kept))
    return PairRows(first, second, same.astype(bool), pair_identities(pairs), len(pairs) - len(kept))
