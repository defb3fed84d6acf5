"""Dictionary attack: public face embeddings (and k-means centroids of them) tried against each
stolen record through the scheme's own verification, in a fixed order, stopping at the first key."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def kmeans_centroids(public: np.ndarray, k: int, seed: int = 0, attempts: int = 2) -> np.ndarray:
    """k centroids of the public embeddings (OpenCV's k-means++), re-normalised onto the sphere."""
    import cv2

    from latticelock.tools.embeddings import normalise

    data = np.ascontiguousarray(public, dtype=np.float32)
    k = min(k, len(data))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    _, labels, centres = cv2.kmeans(data, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
    sizes = np.bincount(labels.ravel(), minlength=k)
    return normalise(centres[np.argsort(-sizes, kind="stable")])  # biggest clusters first


@dataclass(frozen=True)
class DictionaryResult:
    first_success: np.ndarray  # int64[V]: 0-based index of the first guess that unlocked, -1 = none
    guesses_tried: int  # verifications computed (whole chunks, stopping after each victim's first success)
    seconds: float

    @property
    def guesses_per_second(self) -> float:
        return self.guesses_tried / self.seconds if self.seconds > 0 else float("inf")


def dictionary_attack(scheme, records: list, guesses: np.ndarray, chunk: int = 256, progress=None) -> DictionaryResult:
    """Each record against `guesses` in order, `chunk` at a time through `scheme.verify_many`; the
    victim is broken at the first guess that yields a key (the thief stops there)."""
    first = np.full(len(records), -1, dtype=np.int64)
    tried = 0
    start = time.perf_counter()
    for i, record in enumerate(records):
        for lo in range(0, len(guesses), chunk):
            keys = scheme.verify_many(record, guesses[lo : lo + chunk])
            tried += len(keys)
            hits = [j for j, key in enumerate(keys) if key is not None]
            if hits:
                first[i] = lo + hits[0]
                break
        if progress is not None:
            progress.update(1)
    return DictionaryResult(first, tried, time.perf_counter() - start)
