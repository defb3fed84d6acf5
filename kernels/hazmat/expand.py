"""Public matrix expansion: A in Z_q^(m x n) from a 32-byte seed, as Kyber expands its matrix.

The record stores the seed, never A. SHAKE-128 absorbs ``seed || DOMAIN || le32(m) || le32(n) || le32(q)``;
its output is cut into little-endian candidates of ceil(bits(q) / 8) bytes (2 bytes for q < 2^16, 3 for
q < 2^24, 4 up to 2^31), each masked to bits(q) bits, and candidates >= q are rejected, so every entry is
exactly uniform mod q. Entries fill A row by row. No floating point is involved here.

hashlib's SHAKE has no incremental squeeze, but a longer digest always extends a shorter one, so
"squeezing more when short" is asking for a longer digest: the result never depends on how much
was requested first.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

SEED_BYTES = 32
DOMAIN = b"latticelock/expand-matrix/v1"
MAX_Q = 2**31
# Far beyond any parameter set; stops a hostile record from asking for gigabytes.
MAX_ENTRIES = 1 << 22


def is_prime(q: int) -> bool:
    """Deterministic Miller-Rabin, exact for every q < 3.2e9 (bases 2, 3, 5, 7)."""
    if q < 2:
        return False
    for p in (2, 3, 5, 7):
        if q % p == 0:
            return q == p
    d, r = q - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in (2, 3, 5, 7):
        x = pow(a, d, q)
        if x in (1, q - 1):
            continue
        for _ in range(r - 1):
            x = x * x % q
            if x == q - 1:
                break
        else:
            return False
    return True


def check_dimensions(m: int, n: int, q: int) -> None:
    """Raise ValueError unless m > n > 0 are ints and q is a prime with 2 < q < 2^31."""
    for name, value in (("m", m), ("n", n), ("q", q)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 < n < m:
        raise ValueError(f"need m > n > 0, got m={m}, n={n}")
    if m * n > MAX_ENTRIES:
        raise ValueError(f"m*n = {m * n} exceeds the limit of {MAX_ENTRIES} entries")
    if not 2 < q < MAX_Q or not is_prime(int(q)):
        raise ValueError(f"q must be an odd prime below 2^31, got {q}")


def expand_matrix(seed: bytes, m: int, n: int, q: int) -> np.ndarray:
    """A uniform matrix int64[m, n] over Z_q, a deterministic function of (seed, m, n, q)."""
    if not isinstance(seed, (bytes, bytearray)):
        raise TypeError(f"seed must be bytes, got {type(seed).__name__}")
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    check_dimensions(m, n, q)
    m, n, q = int(m), int(n), int(q)
    bits = q.bit_length()
    width = (bits + 7) // 8
    mask = (1 << bits) - 1
    need = m * n
    xof = hashlib.shake_128(bytes(seed) + DOMAIN + struct.pack("<III", m, n, q))
    # Expected candidates: need / P(accept); ask for a quarter more so one digest nearly always suffices.
    count = int(need * (1 << bits) / q * 1.25) + 16
    while True:
        raw = np.frombuffer(xof.digest(count * width), dtype=np.uint8).reshape(count, width).astype(np.int64)
        candidates = np.zeros(count, dtype=np.int64)
        for byte in range(width):
            candidates |= raw[:, byte] << (8 * byte)
        kept = candidates[(candidates & mask) < q] & mask
        if kept.size >= need:
            return np.ascontiguousarray(kept[:need].reshape(m, n))
        count *= 2
