"""DET plots: FRR against FAR per attempt, both on log axes, with the named operating points marked.

A curve comes from the distance model (`tools.attempts`: an attempt of a 1-user store is accepted iff
the k-th smallest distance of its probes is within the radius, or, with per-record radii, its stranger
z-score within the point's z), swept over every limit; the points are the device's own decisions at
each named point, with a bar out to the FAR's 95% upper bound. A
log axis has no 0: a rate of 0 is drawn at half of one error in that many attempts, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Curve:
    label: str
    genuine: np.ndarray  # attempt scores of genuine attempts
    impostor: np.ndarray  # attempt scores of impostor attempts


@dataclass(frozen=True)
class Point:
    label: str
    far: float
    far_upper95: float
    frr: float
    impostor_attempts: int
    genuine_attempts: int
    default: bool  # the device's or the wallet's default: drawn larger


def det_rates(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) at every radius where either changes."""
    genuine, impostor = np.sort(curve.genuine), np.sort(curve.impostor)
    finite = impostor[np.isfinite(impostor)]  # scores beyond a set's radius are infinite: never accepted
    radii = np.unique(np.concatenate([genuine[np.isfinite(genuine)], finite[: 50_000],
                                      np.quantile(finite, np.linspace(0, 1, 500)) if len(finite) else []]))
    far = np.searchsorted(impostor, radii, side="right") / len(impostor)
    frr = 1.0 - np.searchsorted(genuine, radii, side="right") / len(genuine)
    return far, frr


def det_plot(path: Path, title: str, curves: list[Curve], points: list[Point]) -> None:
    """Write a DET plot PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5))
    for curve in curves:
        far, frr = det_rates(curve)
        ax.plot(np.maximum(far, 0.5 / len(curve.impostor)), np.maximum(frr, 0.5 / len(curve.genuine)), label=curve.label, linewidth=1.5)
    for p in points:
        x, y = max(p.far, 0.5 / p.impostor_attempts), max(p.frr, 0.5 / p.genuine_attempts)
        ax.plot([x, p.far_upper95], [y, y], color="0.4", linewidth=1)
        ax.plot(x, y, marker="*" if p.default else "o", markersize=13 if p.default else 6, linestyle="none",
                label=f"{p.label}: FAR {p.far:.1e} (<= {p.far_upper95:.1e}), FRR {p.frr:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FAR per attempt (false accepts / impostor attempts)")
    ax.set_ylabel("FRR per attempt (false rejects / genuine attempts)")
    note = "bars: FAR 95% upper bound; a rate of 0 is drawn at 0.5 / attempts"
    ax.set_title(f"{title}\n{note}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
