"""Nearest point of the E8 lattice (Conway and Sloane, "Sphere Packings, Lattices and Groups", ch. 20).

E8 = D8 u (D8 + 1/2), where D8 is the integer vectors with even coordinate sum. The nearest D8 point
is the rounded vector, with the worst-rounded coordinate rounded the other way when the sum is odd;
the nearest E8 point is the closer of the nearest points of D8 and of D8 + 1/2.
"""

from __future__ import annotations

import numpy as np


def nearest_d8(y: np.ndarray) -> np.ndarray:
    """Nearest point of D8 to each row of y (float[..., 8]); any length works (D_n)."""
    y = np.asarray(y, dtype=np.float64)
    f = np.round(y)
    odd = (f.sum(axis=-1) % 2) != 0
    if np.any(odd):
        error = y - f
        worst = np.argmax(np.abs(error), axis=-1)[..., None]
        step = np.take_along_axis(error, worst, axis=-1)
        step = np.where(step >= 0, 1.0, -1.0)
        fixed = f.copy()
        np.put_along_axis(fixed, worst, np.take_along_axis(f, worst, axis=-1) + step, axis=-1)
        f = np.where(odd[..., None], fixed, f)
    return f


def nearest_e8(y: np.ndarray) -> np.ndarray:
    """Nearest point of E8 to each 8-vector in y (float[..., 8])."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] != 8:
        raise ValueError(f"E8 vectors have 8 coordinates, got shape {y.shape}")
    a = nearest_d8(y)
    b = nearest_d8(y - 0.5) + 0.5
    closer_a = np.sum((y - a) ** 2, axis=-1) <= np.sum((y - b) ** 2, axis=-1)
    return np.where(closer_a[..., None], a, b)


def decode_blocks(y: np.ndarray) -> np.ndarray:
    """Nearest E8 point blockwise: y float[..., 8k] -> float[..., 8k]."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] % 8:
        raise ValueError(f"length {y.shape[-1]} is not a multiple of 8")
    blocks = y.reshape(*y.shape[:-1], y.shape[-1] // 8, 8)
    return nearest_e8(blocks).reshape(y.shape)
