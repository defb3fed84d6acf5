"""Per-record acceptance radii: each template's radius set by how close strangers come to it.

One radius for every face lets strangers in unevenly: a template whose energy lies along the directions
in which faces vary most has strangers spread widely around it, and the near ones come nearer than to
a template elsewhere (on LFW the people with many photos, whose averaged templates are such "hubs",
took most of the false accepts at the wallet's fixed radius). So an operating point with a
`stranger_z` gives each record its own radius, from a model of the strangers around its template.

The model: a stranger's projected, scaled face x has independent coordinates of variance sigma_i^2
(the PCA's explained variances, in the set's scaled units), so for the template e

    d^2 = |e - x|^2   has mean  |e|^2 + sum sigma_i^2   and variance  2 sum sigma_i^4 + 4 sum e_i^2 sigma_i^2,

and the record's radius is where d^2 is `stranger_z` standard deviations below its mean:
radius^2 = mean + z * sd, never beyond the set's `radius` (below half the lattice's minimum distance,
so decoding stays unique) and always short of |e| (the public mean face, e = 0, unlocks no record; the
microcontroller refuses an enrolment that breaks this). z is calibrated on public faces for a per-attempt FAR target
(`latticelock eval calibrate`), exactly as a fixed radius was; the figures are in `params`.

Radii are kept squared, as integers (floor): acceptance compares the integer |e - e'|^2 with them, on
the host and on the microcontroller alike (the chip's fixed-point search can miss a point within about
a unit of the radius, never accept one beyond it: in a check of 400 points per distance it missed 2 at
exactly the radius, 1 at R^2 - 1000, none at R^2 - 3000). A record's radii are a function of its
template: with the two z values known they give |e| and one more quadratic statistic of it. In plain
mode they are stored in the clear (the record gives the face back for one Argon2id anyway, `params`;
they also let a thief skip that Argon2id for wrong candidates, and link one person's records); in
hardened mode they sit in the chip's sealed record. In plain mode the radii are part of the verifier's
KDF label (`hazmat.rep.bound_label`), so radii changed on flash open the record for no one.
"""

from __future__ import annotations

import math

import numpy as np

from latticelock.kernels.errors import ParameterSetError, SchemeError
from latticelock.kernels.params import DEFAULT_FOR_PURPOSE, L2FEParams, get_parameter_set
from latticelock.kernels.projection import Projection


def stranger_variances(params: L2FEParams, projection: Projection) -> np.ndarray:
    """sigma_i^2, float64[m]: the spread of faces along each kept direction, in the set's scaled units."""
    variances = projection.provenance.get("explained_variance")
    if variances is None or len(variances) < params.m:
        raise ParameterSetError(f"projection for {params.name} records no explained variance for {params.m} components")
    return np.asarray(variances[: params.m], dtype=np.float64) * params.scale**2


def stranger_moments(params: L2FEParams, projection: Projection, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation), float64[k] each, of a stranger's squared distance to templates e (int64[k, m])."""
    e = np.atleast_2d(np.asarray(e, dtype=np.float64))
    var = stranger_variances(params, projection)
    mean = (e * e).sum(axis=1) + var.sum()
    return mean, np.sqrt(2.0 * (var * var).sum() + 4.0 * (e * e * var).sum(axis=1))


def radius_sq_at(params: L2FEParams, projection: Projection, e: np.ndarray, z: float) -> np.ndarray:
    """int64[k]: floor(radius^2) of templates e (int64[k, m], scaled) at `z` standard deviations, capped at
    the set's radius."""
    mean, sd = stranger_moments(params, projection, e)
    return np.minimum(np.floor(np.maximum(mean + z * sd, 0.0)), radius_sq_cap(params, e)).astype(np.int64)


def radius_sq_cap(params: L2FEParams, e: np.ndarray) -> np.ndarray:
    """int64[k]: the most a template's squared radius may be: within the set's radius, and short of the
    template's own length, so that no record accepts the public mean face (e = 0, a probe anyone can make)."""
    e = np.atleast_2d(np.asarray(e, dtype=np.int64))
    return np.minimum(np.sum(e * e, axis=1) - 1, math.floor(params.radius**2))


def min_probe_sq(params: L2FEParams) -> int:
    """Probes with integer |e'|^2 below this match no record of `params` (`L2FEParams.probe_floor`); the
    host and the microcontroller compare the same integer."""
    return math.ceil(params.probe_floor**2)


def reaches_floor(params: L2FEParams, e: np.ndarray) -> np.ndarray:
    """bool[k]: which probes e' (int64[k, m], scaled) are long enough to match anything under `params`."""
    e = np.atleast_2d(np.asarray(e, dtype=np.int64))
    return np.sum(e * e, axis=1) >= min_probe_sq(params)


def wallet_point(params: L2FEParams) -> L2FEParams:
    """The wallet's operating point on `params`' lattice (`params` itself if the lattice has none)."""
    wallet = get_parameter_set(DEFAULT_FOR_PURPOSE["wallet"])
    return wallet if same_lattice(wallet, params) else params


def same_lattice(a: L2FEParams, b: L2FEParams) -> bool:
    """Whether two sets can be matched on one device lattice (they may differ in radius, z and floor only)."""
    return (a.q, a.m, a.n, a.scale, a.projection, a.bkz_block) == (b.q, b.m, b.n, b.scale, b.projection, b.bkz_block)


def record_radii_sq(params: L2FEParams, projection: Projection, e: np.ndarray) -> tuple[int, int]:
    """(unlock, wallet) radius^2 of one record of `params` with template e (int64[m]): the set's own, and the
    wallet point's of the same lattice, never larger than the set's own."""
    if params.stranger_z is None:
        raise ParameterSetError(f"{params.name} has one radius for every record (it sets no stranger_z)")
    own = int(radius_sq_at(params, projection, e, params.stranger_z)[0])
    wallet = wallet_point(params)
    if wallet.stranger_z is None:
        wallet_sq = min(own, math.floor(wallet.radius**2))
    else:
        wallet_sq = min(own, int(radius_sq_at(wallet, projection, e, wallet.stranger_z)[0]))
    if wallet_sq <= 0:
        raise SchemeError("this face lies at the public mean face, which anyone can present: it cannot be enrolled")
    return own, wallet_sq
