"""Named L2FE-Hash parameter sets, Kyber style: one name fixes every size, checked at import.

Each set fixes the lattice (q, m, n), the preprocessing (the shipped PCA projection to m dimensions,
then e = round(scale * P(x))), the decoder and its radius, the BKZ block size of the device's reduced
basis, and the Argon2id cost of the verifier.

Why these numbers
- q = 65537 (prime, 17 bits) and n = 16 as in the paper's FaceNet setting; the lattice
  L(A) = {A s + q z} has dimension m and determinant q^(m-n).
- Decoding is exact CVP within `radius` (bounded-distance decoding). `radius` is 0.40 of the
  Gaussian-heuristic minimum distance of L(A), below the 0.5 at which two lattice points could share
  the ball, so acceptance is exactly |e - e'| <= radius. `scale` = radius / threshold, where
  `threshold` is the projected-space L2 distance at 1% false accepts among impostor pairs of the
  public LFW identities (none of them appears in lfw_pairs.txt), cross-fitted so that the PCA never
  measures the faces it was fitted on (in-sample thresholds came out 2-4% too high and gave FPR 1.5%).
- Rounding adds a uniform error in [-1/2, 1/2] per coordinate to e and e', so |e - e'| differs from
  scale * |P(x) - P(x')| by about sqrt(m/6) (2.3 for m = 32 against a radius of about 150).

Operating points (`OPERATING_POINTS`, by purpose): the device's sets share the device lattice
(`DEVICE_BASE`: q, m, n, projection, scale, decoder, BKZ block; the microcontroller decodes every user
on one lattice) and differ in `stranger_z` and their radius ceiling: each record gets its own radius
from the spread of strangers around its template (`kernels.radii`), at most the point's radius, because one radius for every face let strangers in
unevenly (LFW's many-photo people took most false accepts). Each z is calibrated by `latticelock eval
calibrate` for a per-attempt false-accept target of the decision the device makes (its averaged
template, the default 2-of-3 policy, one enrolled user: a store of N users gives a stranger N
chances), on public LFW identities only. The paper's 1% sets stay unchanged for its comparison
tables. A smaller radius changes nothing below: a thief's CVP is not bounded by it.

Measured figures are kept beside each constant below (`latticelock eval schemes`, LFW View 2, 5,999
pairs, FaceNet margin crop + flip average; security columns from `kernels.security`).

Security, measured: the LWE instance itself offers nothing. e is a face centred on the public mean,
and |e| is 0.36-0.39 of lambda_1 (median), so exact CVP at c alone returns A s: the thief's very
first candidate is the secret for 90-100% of records (one Argon2id evaluation each), and the primal
uSVP estimate falls to LLL (beta = 2) at the measured spread of e. This is not a parameter choice
that can be tuned away: acceptance needs radius ~ |e - e'| and uniqueness needs radius < lambda_1 / 2,
while a face lies about one acceptance radius from the mean face (|e| / radius = 0.89-0.98, median).
Against a thief who holds the flash, the hardened mode (l2fe.derive with the MCU's keyed MAC) is what
protects the key; the plain mode only costs him one Argon2id per victim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from latticelock.kernels.errors import ParameterSetError
from latticelock.kernels.hazmat.expand import check_dimensions
from latticelock.kernels.kdf import DEVICE_COST, KdfCost
from latticelock.kernels.hazmat.lattice import gaussian_heuristic

# "cvp": exact closest vector within the radius. "babai": nearest plane, then the same radius check
# (a fast path that never accepts beyond the radius, but may miss a closer point). "babai-raw": the
# paper's decoder, no radius check; at these scales its parallelepiped holds most impostors, so it is
# offered for comparison only.
DECODERS = ("cvp", "babai", "babai-raw")
# Decoding radius as a fraction of the Gaussian-heuristic minimum distance; < 0.5 keeps decoding unique.
RADIUS_FRACTION = 0.40


@dataclass(frozen=True)
class L2FEParams:
    name: str
    q: int
    m: int
    n: int
    scale: float  # e = round(scale * P(x))
    radius: float  # exact-CVP decoding radius, in the scaled (integer) units of e
    projection: str  # kernels/projections/<projection>.npz; the set uses its first m components
    kdf: KdfCost
    decoder: str  # default decoder: "cvp" (exact, within radius) or "babai" (the paper's)
    bkz_block: int  # BKZ block size of the reduced basis the device decodes with
    # None: every record decodes within `radius`. A number: each record gets its own radius from the spread
    # of strangers around its template at this many standard deviations (`kernels.radii`), at most `radius`.
    stranger_z: float | None = None
    # Probes e' with |e'| below this match no record: the public mean face (e' = 0) and faces pulled toward
    # it are probes anyone can make and sit near many templates; no real face is that short. 0: no floor.
    probe_floor: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        try:
            check_dimensions(self.m, self.n, self.q)
            lattice_ok = True
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
            lattice_ok = False
        if self.scale <= 0 or self.radius <= 0:
            problems.append("scale and radius must be positive")
        elif lattice_ok and self.radius >= 0.5 * gaussian_heuristic(self.m, self.n, self.q):
            problems.append(f"radius {self.radius} is not below half the lattice's minimum distance")
        if self.decoder not in DECODERS:
            problems.append(f"decoder {self.decoder!r} is not one of {DECODERS}")
        if self.stranger_z is not None and not math.isfinite(self.stranger_z):
            problems.append("stranger_z must be finite")
        if not 0 <= self.probe_floor < self.radius:
            problems.append("probe_floor must be in [0, radius)")
        if not 2 <= self.bkz_block <= self.m:
            problems.append(f"BKZ block size {self.bkz_block} outside [2, m]")
        if problems:
            raise ParameterSetError(f"parameter set {self.name!r}: " + "; ".join(problems))

    @property
    def threshold(self) -> float:
        """The accepted L2 distance in the projected (unscaled) space."""
        return self.radius / self.scale

    @property
    def lambda1(self) -> float:
        return gaussian_heuristic(self.m, self.n, self.q)


def _set(name: str, m: int, threshold: float, bkz_block: int) -> L2FEParams:
    q, n = 65537, 16
    radius = round(RADIUS_FRACTION * gaussian_heuristic(m, n, q), 1)
    return L2FEParams(
        name=name, q=q, m=m, n=n, scale=round(radius / threshold, 2), radius=radius,
        projection=PROJECTION, kdf=DEVICE_COST, decoder="cvp", bkz_block=bkz_block,
    )


PROJECTION = "lfw-public-pca64"

# Thresholds: projected-space L2 distance at FPR 1% among impostor pairs of the public LFW identities
# (none named in lfw_pairs.txt), cross-fitted (PCA fitted without the identities it is measured on),
# printed by `latticelock eval projection` on FaceNet embeddings (margin crop + flip average).
# Per unlock attempt (`latticelock eval policy`, as for the device's points below) these 1% sets let in
# strangers at LFW FAR 8.2e-3 / 1.1e-2 / 1.4e-2 (m32 / m48 / m64), faces94 0.10 / 0.060 / 0.051.
# m32: TPR 0.9677 at FPR 0.0093 (fresh seed per record), unprotected 512-d ROC at that FPR 0.9847;
#      ROC at FPR 1e-3: TPR 0.9013.
#      lambda_1 (GH) 376.6, sigma_e 26.1, uSVP beta 2, mean-face first guess recovers 100/100 records.
L2FE_FACENET_M32 = _set("l2fe-facenet-m32", 32, threshold=0.7916, bkz_block=20)
# m48: TPR 0.9810 at FPR 0.0087 (fresh seed per record), unprotected 512-d ROC at that FPR 0.9847;
#      ROC at FPR 1e-3: TPR 0.9603. lambda_1 (GH) 2871.4, sigma_e 151.9, uSVP beta 2, mean-face
#      first guess recovers 99/100 records.
L2FE_FACENET_M48 = _set("l2fe-facenet-m48", 48, threshold=0.9571, bkz_block=20)
# m64: TPR 0.9830 at FPR 0.0067 (seeds from a pool of 100; 1,000 pairs with fresh seeds: 0.984 at
#      0.004), unprotected 512-d ROC at that FPR 0.9840; ROC at FPR 1e-3: TPR 0.9560.
#      lambda_1 (GH) 8264.8, sigma_e 368.2, uSVP beta 2, mean-face first guess recovers 45/50 records.
L2FE_FACENET_M64 = _set("l2fe-facenet-m64", 64, threshold=1.0616, bkz_block=20)

# --- operating points of the device lattice ---------------------------------------------------------
# In hardened mode the microcontroller decodes every user's probes on one device lattice of this shape,
# so the device's operating points share its q, m, n, projection and scale. Each record gets its own
# radius from the strangers' spread around its template (`kernels.radii`): the points differ in
# `stranger_z`, and their `radius` is the most any record of the point may have (the largest a public
# template gets at that z; the microcontroller enforces it as the lattice's ceiling for each purpose).
DEVICE_BASE = L2FE_FACENET_M64


# The device lattice's probe floor: 0.95 of the shortest public face (|e| 2647.7 among the 1,549 public
# LFW photos; every LFW, faces94 and deepface image and LFW one-pass frame measured here is longer than
# 2644), printed by `latticelock eval calibrate`.
DEVICE_PROBE_FLOOR = 2515.3


def _operating_point(name: str, stranger_z: float, radius: float) -> L2FEParams:
    return replace(DEVICE_BASE, name=name, stranger_z=stranger_z, radius=radius, probe_floor=DEVICE_PROBE_FLOOR)


# z from `latticelock eval calibrate --embeddings lfw.npz`: the 1,468 LFW identities that no pair of
# lfw_pairs.txt names (1,549 photos; templates of 1 photo for 1,416 of them, of 2-5 for 52), every
# template against every other identity's 3-frame attempts, 1,154,670 impostor attempts of the 2-of-3
# policy against a 1-user store, PCA cross-fitted on 4 folds of identities.
# Measured per attempt by `latticelock eval policy` (5-photo templates, default 2-of-3 policy, 1 user;
# LFW: 310 people of lfw_pairs.txt enrolled, attempts of its 4,281 identities; faces94: 18 people).
# unlock, FAR 1e-4 per attempt: z = -3.4418 (public templates' radii, quartiles 2572/2652/2731, max 2971.9).
#   Public: 1-photo templates 36 / 1,078,284 (<= 4.6e-5), 2+-photo 2 / 76,386 (<= 9.6e-5).
#   LFW: FAR 5.1e-5 (80 / 1,570,910, <= 6.3e-5), FRR 0.0133 (17 / 1,279); 10 users: FAR 5.1e-4.
#   faces94: FAR 0 / 1,547, FRR 0 / 56. LFW people on faces94 templates: 2 / 91,278.
L2FE_DEVICE_FAR1E4 = _operating_point("l2fe-device-far1e-4", stranger_z=-3.4418, radius=2971.9)
# wallet, FAR 1e-5 per attempt: z = -3.9637 (public templates' radii, quartiles 2234/2328/2422, max 2713.0).
#   Public: 1-photo templates 4 / 1,078,284 (<= 9.5e-6), 2+-photo 0 / 76,386 (too few to certify alone).
#   LFW: FAR 1.9e-6 (3 / 1,570,910, <= 5.6e-6), FRR 0.068 (87 / 1,279). faces94: FAR 0 / 1,547, FRR 0 / 56.
#   (With one radius for every face, calibrated the same way, LFW took 16 / 1,570,910, <= 1.65e-5.)
L2FE_WALLET_FAR1E5 = _operating_point("l2fe-wallet-far1e-5", stranger_z=-3.9637, radius=2713.0)

PARAMETER_SETS: dict[str, L2FEParams] = {
    p.name: p for p in (L2FE_FACENET_M32, L2FE_FACENET_M48, L2FE_FACENET_M64, L2FE_DEVICE_FAR1E4, L2FE_WALLET_FAR1E5)
}


@dataclass(frozen=True)
class OperatingPoint:
    parameter_set: str
    purpose: str  # "unlock" (the device), "wallet", or "paper" (the 1% comparison sets)
    far_per_attempt: float | None  # the per-attempt FAR it was calibrated for; None: 1% per image pair


OPERATING_POINTS: dict[str, OperatingPoint] = {
    op.parameter_set: op
    for op in (
        OperatingPoint(L2FE_DEVICE_FAR1E4.name, "unlock", 1e-4),
        OperatingPoint(L2FE_WALLET_FAR1E5.name, "wallet", 1e-5),
        OperatingPoint(L2FE_FACENET_M32.name, "paper", None),
        OperatingPoint(L2FE_FACENET_M48.name, "paper", None),
        OperatingPoint(L2FE_FACENET_M64.name, "paper", None),
    )
}
# One default per purpose: what `device enrol` uses to unlock, and to derive a wallet key.
DEFAULT_FOR_PURPOSE = {"unlock": L2FE_DEVICE_FAR1E4.name, "wallet": L2FE_WALLET_FAR1E5.name, "paper": L2FE_FACENET_M64.name}
# The device's default: unlocking at FAR <= 1e-4 per attempt (the paper's comparison uses "paper", m64).
DEFAULT_SET = DEFAULT_FOR_PURPOSE["unlock"]


def operating_point(name: str) -> OperatingPoint:
    """A named operating point, by parameter-set name or by purpose ("unlock", "wallet", "paper")."""
    if name in DEFAULT_FOR_PURPOSE:
        return OPERATING_POINTS[DEFAULT_FOR_PURPOSE[name]]
    try:
        return OPERATING_POINTS[name]
    except KeyError:
        known = [*DEFAULT_FOR_PURPOSE, *OPERATING_POINTS]
        raise ParameterSetError(f"unknown operating point {name!r}; known: {', '.join(known)}") from None


def operating_point_for_far(far: float) -> OperatingPoint:
    """The loosest point calibrated for a per-attempt FAR at or below `far`; ParameterSetError if none is."""
    calibrated = sorted((op for op in OPERATING_POINTS.values() if op.far_per_attempt is not None),
                        key=lambda op: op.far_per_attempt)
    if not 0 < far < 1:
        raise ParameterSetError(f"a false-accept rate must be in (0, 1), got {far:g}")
    fitting = [op for op in calibrated if op.far_per_attempt <= far]
    if not fitting:
        offered = ", ".join(f"{op.far_per_attempt:g} ({op.parameter_set})" for op in calibrated)
        raise ParameterSetError(f"no operating point is calibrated for FAR {far:g} per attempt; calibrated: {offered}")
    return fitting[-1]


def get_parameter_set(name: str) -> L2FEParams:
    try:
        return PARAMETER_SETS[name]
    except KeyError:
        raise ParameterSetError(f"unknown parameter set {name!r}; known: {', '.join(PARAMETER_SETS)}") from None
