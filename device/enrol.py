"""Enrolment ("provisioning at a kiosk"): N good frames, one consistent face, one Gen, one record.

Frames go through the same detect / choose / quality gate as an unlock. The captures must agree:
each must lie within `max_spread` (L2, unit-norm embeddings) of their medoid, and outliers (a
second person stepping in, a bad alignment) are dropped and replaced by further frames. The kept
embeddings are averaged and re-normalised into one template. Before anything is stored, the
template is tried against every enrolled user: a face that would unlock another user's record is
refused (nothing is written, on flash or on the microcontroller). In a hardened store the
microcontroller then draws the secret and seals the record (`hardened.enrol`); in a plain store Gen
runs on the host. Only the record is stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from latticelock.device.errors import ConfigError, EnrolmentError
from latticelock.device.quality import QualityConfig, assess
from latticelock.device.sources import Frame, Source
from latticelock.device.store import FlashStore, StoredUser

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.models.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrolConfig:
    frames: int = 5
    """Good frames to average (`--frames`, default 5)."""
    max_frames: int = 300
    """Give up after reading this many frames (default 300)."""
    max_spread: float = 1.0
    """Largest L2 distance of a capture from the captures' medoid (`--max-spread`, default 1.0)."""
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.max_frames < self.frames or not 0 < self.max_spread <= 2:
            raise ConfigError(f"invalid enrolment settings: frames={self.frames}, max_frames={self.max_frames}, max_spread={self.max_spread}")


@dataclass
class Capture:
    embeddings: np.ndarray
    """float32 [k, 512], the consistent captures kept."""
    names: list[str]
    seen: int
    rejected: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class EnrolResult:
    user: StoredUser
    capture: Capture
    hardened: bool
    public_key: bytes | None


def consistent_subset(embeddings: np.ndarray, max_spread: float) -> np.ndarray:
    """Indices of the captures within `max_spread` of the medoid (the capture nearest all others)."""
    x = np.asarray(embeddings, dtype=np.float64)
    # From the Gram matrix: broadcasting the differences would need k*k*512 floats (368 MB at max_frames).
    sq = np.einsum("ij,ij->i", x, x)
    distances = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    medoid = int(np.argmin(distances.sum(axis=1)))
    return np.flatnonzero(distances[medoid] <= max_spread)


def make_template(embeddings: np.ndarray) -> np.ndarray:
    """Mean of the L2-normalised embeddings, re-normalised: float32 [512]."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = x.mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm < 1e-6:
        raise EnrolmentError("captures cancel out; they cannot be one face")
    return (mean / norm).astype(np.float32)


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


@dataclass(frozen=True)
class FrameCheck:
    """What enrolment made of one frame, for a live preview (the kiosk): never leaves the machine."""

    frame: Frame
    faces: list
    """Every face the detector found (box, score, landmarks)."""
    verdict: str
    """"good", "no face", "two faces" or the quality gate's first reason ("face too small (...)", ...)."""
    good: int
    """Good, consistent frames in hand so far."""
    needed: int


def capture_good_frames(
    source: Source,
    pipeline: "FacePipeline",
    config: EnrolConfig,
    on_frame: Callable[[FrameCheck], None] | None = None,
) -> Capture:
    """Read frames until `config.frames` consistent good ones are in hand (EnrolmentError otherwise).

    A frame with more than one face is refused ("one person only": a second face could be the one
    captured). `on_frame` sees every frame's verdict as it happens."""
    embeddings: list[np.ndarray] = []
    names: list[str] = []
    rejected: Counter = Counter()
    seen = 0
    for frame in source:
        seen += 1
        faces = pipeline.faces(frame.image)
        face = pipeline.choose(faces, frame.image.shape) if len(faces) == 1 else None
        if not faces:
            verdict = "no face"
        elif len(faces) > 1:
            verdict = "two faces"
        else:
            quality = assess(frame.image, face, config.quality)
            verdict = "good" if quality.ok else quality.reasons[0]
        if verdict != "good":
            rejected[_reason_kind(verdict)] += 1
        else:
            embeddings.append(pipeline.embed_faces(frame.image, [face])[0])
            names.append(frame.name)
        if on_frame is not None:
            on_frame(FrameCheck(frame, list(faces), verdict, min(len(embeddings), config.frames), config.frames))
        if verdict == "good" and len(embeddings) >= config.frames:
            keep = consistent_subset(np.stack(embeddings), config.max_spread)
            if len(keep) >= config.frames:
                keep = keep[: config.frames]
                dropped = len(embeddings) - len(keep)
                if dropped:
                    rejected["inconsistent with the other captures"] += dropped
                return Capture(np.stack(embeddings)[keep], [names[i] for i in keep], seen, rejected)
        if seen >= config.max_frames:
            break
    summary = ", ".join(f"{n} {why}" for why, n in rejected.most_common()) or "none rejected"
    if len(embeddings) >= config.frames:
        raise EnrolmentError(
            f"captures are inconsistent: no {config.frames} of the {len(embeddings)} good frames lie within "
            f"{config.max_spread} of each other's medoid (one person only, please); rejected: {summary}"
        )
    raise EnrolmentError(f"only {len(embeddings)} good frames of the {config.frames} needed in {seen} frames read; rejected: {summary}")


def collisions(store: FlashStore, user: str, template: np.ndarray, recipe_options: dict | None = None) -> list[str]:
    """The other enrolled users whose plain records this template unlocks."""
    from latticelock.kernels.errors import KernelsError
    from latticelock.kernels.recipe import Gallery

    records = {}
    for other in store.users():
        if other.name == user:
            continue
        try:
            records[other.name] = other.record()
        except KernelsError:
            continue
    return Gallery(records, **(recipe_options or {})).collisions(template) if records else []


def store_template(
    user: str,
    template: np.ndarray,
    store: FlashStore,
    parameter_set: str,
    *,
    mcu: "McuClient | None" = None,
    recipe_options: dict | None = None,
) -> tuple[StoredUser, bytes | None]:
    """Gen on the template and store the record, refusing a face that unlocks another user.

    Hardened store: the microcontroller seals the record and checks collisions (two-phase, see
    `hardened.enrol`); returns the user's unlock public key. Plain store: Gen on the host, bound to
    the user name."""
    from latticelock.device.store import check_user_name

    check_user_name(user)
    if store.mode == "hardened":
        from latticelock.device import hardened

        if mcu is None:
            raise EnrolmentError(f"{store.path} is a hardened store: attach its microcontroller (--mcu URL)")
        hardened.reconcile(store, mcu)
        result = hardened.enrol(store, mcu, user, template, parameter_set, (recipe_options or {}).get("projection"))
        return result.user, result.public_key
    from latticelock.kernels.recipe import enrol as gen

    options = dict(recipe_options or {})
    clashes = collisions(store, user, template, options)
    if clashes:
        raise EnrolmentError(f"this face unlocks the record of {', '.join(repr(c) for c in clashes)}: enrolment refused, nothing stored")
    return store.put(user, gen(template, parameter_set, label=user.encode("utf-8"), **options)), None


def enrol(
    user: str,
    source: Source,
    pipeline: "FacePipeline",
    store: FlashStore,
    parameter_set: str,
    config: EnrolConfig | None = None,
    *,
    mcu: "McuClient | None" = None,
    recipe_options: dict | None = None,
) -> EnrolResult:
    """Capture, average, refuse a collision, one Gen, store (replacing any earlier record of `user` atomically)."""
    capture = capture_good_frames(source, pipeline, config or EnrolConfig())
    template = make_template(capture.embeddings)
    stored, public_key = store_template(user, template, store, parameter_set, mcu=mcu, recipe_options=recipe_options)
    del template
    log.info("enrolled %r from %d frames (%s)", user, len(capture.names), stored.scheme_id)
    return EnrolResult(stored, capture, store.mode == "hardened", public_key)
