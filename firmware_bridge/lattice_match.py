"""The microcontroller's match: bounded-distance decoding in integer arithmetic, then exact checks.

Written as the firmware would run it on a Cortex-M33 class part: integers only (int16/int32 tables,
int64 accumulators; the bounds below keep every value inside int64), fixed-size arrays, and a node
budget that bounds the work of every decode. numba compiles it like C, so the simulator runs it at
firmware-like cost per operation and counts the operations for the time estimate in PROTOCOL.md.

The device lattice L(A) = {A s + q z} (A: m x n, expanded from a public seed with SHAKE-128) is
decoded on a BKZ-reduced basis that the host provisions once (`LatticeTables`): the integer basis
B (int16), the Gram-Schmidt data in fixed point (mu in Q30, the projection P = B*^T / |B*|^2 in Qp with
p in [32, 40] chosen per lattice so that |P| < 2^28,
|b*_i|^2 in Q8). Those tables only guide the search; nothing they say is trusted:
- at provisioning every basis row is checked to lie in L(A) (so every decoded v does too), and
  the table ranges are checked so that no intermediate can overflow int64 (`validate`);
- a decoded v is accepted only if |t - v|^2 <= R^2 exactly in integers and the secret s recovered
  from v (mod q, with the inverse of n independent rows of A, computed on the chip) satisfies
  A s = v mod q and the sealed verifier tag.
A wrong table can therefore cost false rejects, never a false accept.

Search: Schnorr-Euchner depth-first enumeration within radius R, with the lazily refreshed centre
partial sums of fplll. Because R < lambda_1 / 2, at most one lattice point lies within R of any
target, so the first one found is the answer and the search stops there; a target with no point
within R visits the whole pruned tree (about 1,300 nodes at the device operating point, 12,500 at
the paper's 1% radius, m = 64). Constant time: the firmware keeps stepping dummy nodes until the
budget is spent, so a decode's duration says nothing about the target; the simulator counts those
padding instead of spending it (`OpCounts.padded_nodes`, `padded_macs`); secret recovery and the
checks below run on every decode (on a dummy point after a miss), and so does the caller's tag HMAC.

Fixed-point bounds (validated at provisioning; m <= 64, q < 2^17, R^2 < 2^25):
  t_j: centred residues, |t_j| <= 2^16.      P (Qp): |P| < 2^28.
  x_i = sum_j t_j P[j, i] >> (p - 32) (Q32):  |acc| < 64 * 2^16 * 2^28 = 2^50.
  mu (Q30): |mu| <= 2^30.5; c_k: |c_k| < 2^12 (checked per node); c_k * mu * 4 < 2^45; 64 of them < 2^51.
  diff = c_i - ctr_i in Q12, term = ((diff^2 >> 8) * B_q8) >> 8 in Q16: |B| < 2^28 units and the
  zigzag stops once a term passes the bound, so diff^2 * B < (R + 2^15)^2 < 2^31 units: < 2^55 at Q24.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

MU_FRAC, X_FRAC, B_FRAC, D_FRAC = 30, 32, 8, 16
MAX_P_FRAC = 40
MAX_M, MAX_Q, MAX_RADIUS_SQ = 64, 1 << 17, 1 << 25
MAX_P = 1 << 28  # |P| in its fixed point (Q`p_frac`, 32 <= p_frac <= 40)
MAX_B = 1 << 28  # |b*_i|^2 in units
MAX_COEFF = 1 << 12
NODE_BUDGET = 16384
# Multiply-accumulates of one search (coordinates, centre refreshes, rebuilding v), padded to this too;
# the most measured is about 39,000 (m = 64, the largest radius).
MAC_BUDGET = 65536
# Pruning slack: the fixed-point distance may undershoot by a few units of Q16; never cut the true point.
PRUNE_SLACK_Q16 = 1 << 12

# Operation counters (index into the counts array).
NODES, MACS = 0, 1


class TableError(ValueError):
    """Lattice tables that are inconsistent, out of range, or not a basis of the device lattice."""


@dataclass(frozen=True)
class LatticeTables:
    """The device lattice as the microcontroller stores it (about 41 KB at m = 64)."""

    m: int
    n: int
    q: int
    basis: np.ndarray  # int16 [m, m], rows b_i
    mu: np.ndarray  # int32 [m, m], Q30, mu[i, j] for j < i, unit diagonal
    proj: np.ndarray  # int32 [m, m], Q`p_frac`, x = t @ proj
    bstar_sq: np.ndarray  # int64 [m], Q8
    p_frac: int

    @classmethod
    def from_float(cls, q: int, n: int, basis, mu, proj, bstar_sqnorm) -> "LatticeTables":
        """Quantise a reduced basis and its float64 Gram-Schmidt data (what the host computes)."""
        basis = np.asarray(basis)
        m = basis.shape[0]
        if np.max(np.abs(basis)) >= 1 << 15:
            raise TableError("basis entries do not fit int16")
        mu_q = np.rint(np.tril(np.asarray(mu, dtype=np.float64)) * 2.0**MU_FRAC)
        proj = np.asarray(proj, dtype=np.float64)
        largest = float(np.max(np.abs(proj)))
        p_frac = min(MAX_P_FRAC, int(np.floor(np.log2((MAX_P - 1) / largest)))) if largest > 0 else MAX_P_FRAC
        if p_frac < X_FRAC:
            raise TableError("Gram-Schmidt projection too large for the firmware's fixed point")
        proj_q = np.rint(proj * 2.0**p_frac)
        b_q = np.rint(np.asarray(bstar_sqnorm, dtype=np.float64) * 2.0**B_FRAC)
        if np.max(np.abs(mu_q)) >= 2**31 or np.max(np.abs(proj_q)) >= MAX_P or np.max(b_q) >= MAX_B * 2**B_FRAC:
            raise TableError("Gram-Schmidt data out of the firmware's fixed-point range")
        return cls(m, n, q, basis.astype(np.int16), mu_q.astype(np.int32), proj_q.astype(np.int32), b_q.astype(np.int64), p_frac)

    # Layout on the wire and in the MCU's flash: header then the arrays, little-endian.
    _HEAD = struct.Struct("<4sBBIB")
    MAGIC = b"LLLT"

    def to_bytes(self) -> bytes:
        head = self._HEAD.pack(self.MAGIC, self.m, self.n, self.q, self.p_frac)
        return head + b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in (self.basis, self.mu, self.proj, self.bstar_sq))

    @classmethod
    def from_bytes(cls, data: bytes) -> "LatticeTables":
        if len(data) < cls._HEAD.size:
            raise TableError("lattice tables truncated")
        magic, m, n, q, p_frac = cls._HEAD.unpack_from(data)
        if (magic != cls.MAGIC or not 1 <= n < m <= MAX_M or not 2 < q < MAX_Q or not _is_prime(q)
                or not X_FRAC <= p_frac <= MAX_P_FRAC):
            raise TableError("not lattice tables for this firmware")
        sizes = [(np.dtype("<i2"), m * m), (np.dtype("<i4"), m * m), (np.dtype("<i4"), m * m), (np.dtype("<i8"), m)]
        if len(data) != cls._HEAD.size + sum(dt.itemsize * count for dt, count in sizes):
            raise TableError("lattice tables have the wrong length")
        arrays, pos = [], cls._HEAD.size
        for dt, count in sizes:
            arrays.append(np.frombuffer(data, dtype=dt, count=count, offset=pos).astype(dt.newbyteorder("=")))
            pos += dt.itemsize * count
        basis, mu, proj, bstar = arrays
        return cls(m, n, q, basis.reshape(m, m), mu.reshape(m, m), proj.reshape(m, m), bstar, p_frac)

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()


def _is_prime(q: int) -> bool:
    """Trial division (q < 2^17: at most 362 divisions); secret recovery inverts mod q."""
    return q > 1 and all(q % d for d in range(2, math.isqrt(q) + 1))


def validate(tables: LatticeTables, A: np.ndarray) -> np.ndarray:
    """Check tables against A (int64 [m, n] mod q): every basis row in L(A), ranges safe for int64.

    Returns the row selection and inverse the chip keeps for secret recovery (`SecretRows`)."""
    m, n, q = tables.m, tables.n, tables.q
    if A.shape != (m, n) or tables.basis.shape != (m, m):
        raise TableError("lattice tables do not match the device lattice's dimensions")
    if np.any(tables.bstar_sq < 1) or np.any(tables.bstar_sq >= MAX_B << B_FRAC) or np.any(np.abs(tables.proj) >= MAX_P):
        raise TableError("Gram-Schmidt data out of range")
    if np.any(np.diag(tables.mu) != 1 << MU_FRAC) or np.any(np.triu(tables.mu, 1) != 0):
        raise TableError("mu must be unit lower triangular")
    rows = secret_rows(A, q)
    # v is in L(A) iff v = A s mod q for s = inv(A_I) v_I.
    basis = tables.basis.astype(np.int64)
    s = (basis[:, rows.index] @ rows.inverse.T) % q
    if np.any((s @ A.T - basis) % q != 0):
        raise TableError("a basis row is not in the device lattice")
    return rows


@dataclass(frozen=True)
class SecretRows:
    """n rows of A independent mod q, and the inverse of that n x n block (exact integers mod q)."""

    index: np.ndarray  # int64 [n]
    inverse: np.ndarray  # int64 [n, n]


def secret_rows(A: np.ndarray, q: int) -> SecretRows:
    """Greedy choice of n independent rows of A mod q and their inverse, by Gauss-Jordan mod q."""
    A = np.mod(np.asarray(A, dtype=np.int64), q)
    m, n = A.shape
    chosen: list[int] = []
    echelon: list[np.ndarray] = []
    pivots: list[int] = []
    for r in range(m):
        row = A[r].copy()
        for e, p in zip(echelon, pivots):
            row = (row - row[p] * e) % q
        nz = np.flatnonzero(row)
        if nz.size == 0:
            continue
        p = int(nz[0])
        row = row * pow(int(row[p]), -1, q) % q
        echelon = [(e - e[p] * row) % q for e in echelon] + [row]
        pivots.append(p)
        chosen.append(r)
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise TableError("the device lattice's A has rank < n mod q")
    block = A[chosen]
    work = np.concatenate([block, np.eye(n, dtype=np.int64)], axis=1)
    for col in range(n):
        piv = col + int(np.flatnonzero(work[col:, col])[0])
        work[[col, piv]] = work[[piv, col]]
        work[col] = work[col] * pow(int(work[col, col]), -1, q) % q
        for r in range(n):
            if r != col and work[r, col]:
                work[r] = (work[r] - work[r, col] * work[col]) % q
    return SecretRows(np.array(chosen, dtype=np.int64), work[:, n:].copy())


@njit(cache=True)
def _decode(t, basis, mu, proj, p_shift, bstar, bound, budget, out, counts):
    """Find the lattice point within sqrt(bound) (Q16) of t; returns 1 and writes v to out, else 0."""
    m = t.shape[0]
    macs = 0
    x = np.zeros(m, dtype=np.int64)
    for i in range(m):
        acc = np.int64(0)
        for j in range(m):
            acc += t[j] * np.int64(proj[j, i])
        x[i] = acc >> p_shift
    macs += m * m
    # sig[i, k] = x_i - sum_{k' >= k} c_k' mu[k', i] (Q32); the centre of level i is sig[i, i + 1].
    sig = np.zeros((m, m + 1), dtype=np.int64)
    for i in range(m):
        sig[i, m] = x[i]
    begin = np.full(m, m - 1, dtype=np.int64)
    c = np.zeros(m, dtype=np.int64)
    ctr = np.zeros(m, dtype=np.int64)
    dx = np.zeros(m, dtype=np.int64)
    ddx = np.zeros(m, dtype=np.int64)
    partial = np.zeros(m + 1, dtype=np.int64)
    half = np.int64(1) << (X_FRAC - 1)
    i = m - 1
    ctr[i] = x[i]
    c[i] = (ctr[i] + half) >> X_FRAC
    dx[i] = 1 if ctr[i] >= (c[i] << X_FRAC) else -1
    ddx[i] = dx[i]
    nodes = 0
    found = 0
    while nodes < budget:
        nodes += 1
        if c[i] >= MAX_COEFF or c[i] <= -MAX_COEFF:
            break
        diff = ((c[i] << X_FRAC) - ctr[i]) >> (X_FRAC - 12)
        term = (((diff * diff) >> 8) * bstar[i]) >> 8
        d = partial[i + 1] + term
        if d <= bound:
            if i == 0:
                for r in range(m):
                    acc = np.int64(0)
                    for k in range(m):
                        acc += c[k] * np.int64(basis[k, r])
                    out[r] = acc
                macs += m * m
                found = 1
                break
            partial[i] = d
            hi = begin[i]
            i -= 1
            for k in range(hi, i, -1):
                sig[i, k] = sig[i, k + 1] - c[k] * (np.int64(mu[k, i]) << (X_FRAC - MU_FRAC))
                macs += 1
            if hi > begin[i]:
                begin[i] = hi
            begin[i + 1] = i + 1
            ctr[i] = sig[i, i + 1]
            c[i] = (ctr[i] + half) >> X_FRAC
            dx[i] = 1 if ctr[i] >= (c[i] << X_FRAC) else -1
            ddx[i] = dx[i]
        else:
            i += 1
            if i == m:
                break
            c[i] += dx[i]
            ddx[i] = -ddx[i]
            dx[i] = ddx[i] - dx[i]
    counts[NODES] += nodes
    counts[MACS] += macs
    return found


@dataclass
class OpCounts:
    """Operations the firmware spent: search nodes, multiply-accumulates, and the padding that makes every
    decode cost its budgets whatever the target (the simulator counts the padding instead of spending it)."""

    decodes: int = 0
    nodes: int = 0
    macs: int = 0
    padded_nodes: int = 0
    padded_macs: int = 0


def decode(tables: LatticeTables, t: np.ndarray, radius_sq: int, counts: OpCounts) -> np.ndarray | None:
    """The lattice point within sqrt(radius_sq) of the centred integer target t, if the search finds one."""
    raw = np.zeros(2, dtype=np.int64)
    out = np.zeros(tables.m, dtype=np.int64)
    bound = (int(radius_sq) << D_FRAC) + PRUNE_SLACK_Q16
    found = _decode(np.asarray(t, dtype=np.int64), tables.basis, tables.mu, tables.proj, tables.p_frac - X_FRAC, tables.bstar_sq,
                    np.int64(bound), NODE_BUDGET, out, raw)
    counts.decodes += 1
    counts.nodes += int(raw[NODES])
    counts.macs += int(raw[MACS])
    counts.padded_nodes += NODE_BUDGET - int(raw[NODES])
    counts.padded_macs += max(MAC_BUDGET - int(raw[MACS]), 0)
    return out if found else None


def warm_up() -> None:
    """Compile the decoder now (numba caches it on disk), as flashed firmware would be: the first
    request must not wait for a compiler."""
    eye = np.eye(2, dtype=np.int16)
    _decode(np.zeros(2, dtype=np.int64), eye, (np.eye(2) * (1 << MU_FRAC)).astype(np.int32),
            (np.eye(2) * (1 << 20)).astype(np.int32), 0, np.full(2, 1 << B_FRAC, dtype=np.int64),
            np.int64(1 << D_FRAC), 4, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64))


def centred(v: np.ndarray, q: int) -> np.ndarray:
    """v mod q in (-q/2, q/2], as int64."""
    r = np.mod(np.asarray(v, dtype=np.int64), q)
    return np.where(r > q // 2, r - q, r)


def match(tables: LatticeTables, A: np.ndarray, rows: SecretRows, c: np.ndarray, probe: np.ndarray,
          radius_sq: int, counts: OpCounts) -> np.ndarray | None:
    """The secret s if the probe e' lies within R of the record's lattice point A s (c = A s + e), else None.

    The caller still checks s against the sealed verifier tag."""
    q = tables.q
    t = centred(np.asarray(c, dtype=np.int64) - np.asarray(probe, dtype=np.int64), q)
    v = decode(tables, t, radius_sq, counts)
    found = v is not None
    if not found:
        v = t  # recovery and checks run anyway, on a dummy point, so a miss costs what a hit does
    s = (np.mod(v[rows.index], q) @ rows.inverse.T) % q
    counts.macs += tables.n * tables.n + tables.m * tables.n
    if not found or np.any((A @ s - v) % q != 0):
        return None
    d = t - v
    # Each coordinate first, so the sum of squares stays far inside int64 (v can be any lattice point
    # when the tables' Gram-Schmidt data do not belong to their basis).
    if np.any(np.abs(d) > math.isqrt(int(radius_sq))) or int(d @ d) > int(radius_sq):
        return None
    return s


EXPAND_DOMAIN = b"latticelock/expand-matrix/v1"


def expand_matrix(seed: bytes, m: int, n: int, q: int) -> np.ndarray:
    """A (int64 [m, n], uniform mod q) from the lattice seed: the chip's own copy of the host's SHAKE-128
    expansion (candidates of ceil(bits(q)/8) little-endian bytes masked to bits(q), >= q rejected),
    consuming the stream one candidate at a time as firmware would."""
    bits = q.bit_length()
    width, mask = (bits + 7) // 8, (1 << bits) - 1
    need = m * n
    count = need * 2 + 64
    while True:
        stream = hashlib.shake_128(bytes(seed) + EXPAND_DOMAIN + struct.pack("<III", m, n, q)).digest(count * width)
        entries: list[int] = []
        for pos in range(0, len(stream), width):
            candidate = int.from_bytes(stream[pos : pos + width], "little") & mask
            if candidate < q:
                entries.append(candidate)
                if len(entries) == need:
                    return np.array(entries, dtype=np.int64).reshape(m, n)
        count *= 2
