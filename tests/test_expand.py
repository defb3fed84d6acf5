"""Seed expansion: pinned known answers, an independent reference implementation, and its properties."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from latticelock.kernels.hazmat.expand import DOMAIN, expand_matrix, is_prime

# sha256 of expand_matrix(seed, m, n, q) as little-endian int64, computed once from this implementation
# (and matched by the independent reference below); any change to the expansion breaks stored records.
KNOWN_ANSWERS = [
    (bytes(range(32)), 48, 16, 65537, "90af74a23cee3d55f5a6b95a7a854bc8fd0ac886a139b6d4d6ce7784f008853d", [26606, 48185, 41912, 49019]),
    (bytes(32), 32, 16, 65537, "b7c80ceeda35344038d05056389e857dfbca0e6c79a4597236f0df402a02eae9", [45870, 56278, 5554, 17479]),
    (b"\xff" * 32, 24, 8, 12289, "0663070be8002b97ee7d015cf09d4df05fd96a75cc95dfacedcdbfe6af13d89f", [5799, 8820, 841, 6410]),
    (bytes(range(32)), 20, 10, 2147483647, "27dc5175ded1aacf8728f4832ee6b4cc54474e52af488b34a65c785b16b005b9", [269045108, 1122933570, 947892095, 737427444]),
]


def reference_expand(seed: bytes, m: int, n: int, q: int) -> np.ndarray:
    """The specification, one candidate at a time from one long SHAKE-128 stream."""
    bits = q.bit_length()
    width = (bits + 7) // 8
    stream = hashlib.shake_128(seed + DOMAIN + m.to_bytes(4, "little") + n.to_bytes(4, "little") + q.to_bytes(4, "little"))
    data = stream.digest(width * m * n * 8 + 4096)
    out = []
    pos = 0
    while len(out) < m * n:
        value = int.from_bytes(data[pos : pos + width], "little") & ((1 << bits) - 1)
        pos += width
        if value < q:
            out.append(value)
    return np.array(out, dtype=np.int64).reshape(m, n)


@pytest.mark.parametrize("seed,m,n,q,digest,first", KNOWN_ANSWERS)
def test_known_answers(seed, m, n, q, digest, first):
    A = expand_matrix(seed, m, n, q)
    assert A.dtype == np.int64 and A.shape == (m, n)
    assert hashlib.sha256(A.astype("<i8").tobytes()).hexdigest() == digest
    assert A[0, :4].tolist() == first
    np.testing.assert_array_equal(A, reference_expand(seed, m, n, q))


def test_range_determinism_and_seed_sensitivity():
    seed = bytes(range(32))
    A = expand_matrix(seed, 64, 16, 65537)
    assert A.min() >= 0 and A.max() < 65537
    np.testing.assert_array_equal(A, expand_matrix(bytearray(seed), 64, 16, 65537))
    flipped = bytes([seed[0] ^ 1]) + seed[1:]
    assert np.mean(expand_matrix(flipped, 64, 16, 65537) == A) < 0.01


def test_dimensions_are_domain_separated():
    seed = bytes(32)
    small = expand_matrix(seed, 32, 16, 65537)
    large = expand_matrix(seed, 48, 16, 65537)
    assert not np.array_equal(small, large[:32])


def test_roughly_uniform():
    # q = 257: 9-bit candidates, about half rejected; chi-square over 257 bins with ~400 per bin.
    q = 257
    A = expand_matrix(bytes(range(32)), 6425, 16, q)
    counts = np.bincount(A.ravel(), minlength=q)
    expected = A.size / q
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    # 256 degrees of freedom: mean 256, sd ~22.6; 400 is ~6 sd out.
    assert chi2 < 400


@pytest.mark.parametrize(
    "seed,m,n,q,error",
    [
        (bytes(31), 32, 16, 65537, ValueError),
        ("x" * 32, 32, 16, 65537, TypeError),
        (bytes(32), 16, 16, 65537, ValueError),
        (bytes(32), 32, 0, 65537, ValueError),
        (bytes(32), 32, 16, 65536, ValueError),
        (bytes(32), 32, 16, 2**31 + 11, ValueError),
        (bytes(32), 32.0, 16, 65537, TypeError),
        (bytes(32), 1 << 20, 16, 65537, ValueError),
    ],
)
def test_rejects_bad_input(seed, m, n, q, error):
    with pytest.raises(error):
        expand_matrix(seed, m, n, q)


def test_is_prime_matches_trial_division():
    def slow(k: int) -> bool:
        return k >= 2 and all(k % d for d in range(2, int(k**0.5) + 1))

    assert all(is_prime(k) == slow(k) for k in range(3000))
    assert is_prime(65537) and is_prime(2**31 - 1) and not is_prime(2**31 + 1)
