"""The report's pictures, as PNG bytes: ASR against guesses (dictionary, random guessing, lattice)
and the face grids (per scheme and mode: the victim's photo, the reconstruction, its distance to the
enrolled embedding and whether it passes tau). `write_plots` saves them; the HTML page embeds them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _asr_axes(ax, xlabel: str, ylabel: str, title: str, legend_size: int) -> None:
    """Label a log-x ASR plot the same way for every figure."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()


def asr_plots(report) -> dict[str, bytes]:
    plt = _pyplot()
    out = {}
    fig, ax = plt.subplots(figsize=(8, 5))
    colours: dict[str, str] = {}
    for label, curve in report.curves.items():
        if label.startswith("lattice"):
            continue
        attack, _, pset = label.partition(" ")
        if attack == "random-guess":
            style = {"color": "black", "linewidth": 2}
        else:
            colours.setdefault(pset, f"C{len(colours) % 10}")
            style = {"color": colours[pset], "linestyle": "--" if attack.endswith("kmeans") else "-"}
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label, **style)
    _asr_axes(ax, "guesses per victim", "attack success rate", "Dictionary attacks and random guessing (ASR against guesses)", 7)
    out["asr_vs_guesses"] = _png(fig)
    lattice = {k: v for k, v in report.curves.items() if k.startswith("lattice")}
    if lattice:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, curve in lattice.items():
            ax.step(np.arange(1, len(curve) + 1), curve, where="post", label=label)
        _asr_axes(ax, "verifier (Argon2id) evaluations per victim", "attack success rate (key recovered)",
                  "Lattice attack on L2FE-Hash records", 8)
        out["lattice_asr_vs_evaluations"] = _png(fig)
    return out


def face_grid(name: str, grid: dict, generator: str) -> bytes:
    """Two rows per grid: the victims' photos (when the dataset folder was given) over the reconstructions."""
    plt = _pyplot()
    n = len(grid["victims"])
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.6), squeeze=False)
    for j in range(n):
        photo, face, d = grid["photos"][j], grid["reconstructions"][j], grid["distances"][j]
        top, bottom = axes[0, j], axes[1, j]
        if photo is not None:
            top.imshow(photo)
        else:
            top.text(0.5, 0.5, "photo\nnot loaded", ha="center", va="center", fontsize=8)
        top.set_title(grid["victims"][j][:18], fontsize=7)
        bottom.imshow(face)
        passed = d <= grid["tau"]
        bottom.set_title(f"d = {d:.3f} {'PASS' if passed else 'fail'}", fontsize=8, color="green" if passed else "red")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("victim's photo", fontsize=8)
    axes[1, 0].set_ylabel("reconstruction", fontsize=8)
    fig.suptitle(f"{name}: tau = {grid['tau']:.4f}; generator {generator}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def figures(report) -> dict[str, bytes]:
    """Every picture of the report, by file stem."""
    out = asr_plots(report)
    generator = report.generator["architecture"] if report.generator else "-"
    for name, grid in report.grids.items():
        out["faces_" + name.replace(" ", "_")] = face_grid(name, grid, generator)
    return out


def write_plots(report, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, png in figures(report).items():
        path = directory / f"{stem}.png"
        path.write_bytes(png)
        written.append(path)
    return written
