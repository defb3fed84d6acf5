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

from dataclasses import dataclass

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

PARAMETER_SETS: dict[str, L2FEParams] = {
    p.name: p for p in (L2FE_FACENET_M32, L2FE_FACENET_M48, L2FE_FACENET_M64)
}
# The most accurate set; its decoding costs a few milliseconds on a CPU (`latticelock bench fe`).
DEFAULT_SET = L2FE_FACENET_M64.name


def get_parameter_set(name: str) -> L2FEParams:
    try:
        return PARAMETER_SETS[name]
    except KeyError:
        raise ParameterSetError(f"unknown parameter set {name!r}; known: {', '.join(PARAMETER_SETS)}") from None
