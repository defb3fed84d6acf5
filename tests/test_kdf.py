"""Key derivation: HKDF known answers (RFC 5869), Argon2id cost checks, independent verifier and key."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from latticelock.kernels.errors import ParameterSetError
from latticelock.kernels.kdf import DEVICE_COST, EVALUATION_COST, KdfCost, argon2id, hkdf
from latticelock.kernels.hazmat.rep import derive, sample_secret, secret_bytes


def test_hkdf_rfc5869_case_1():
    okm = hkdf(bytes([0x0B] * 22), bytes(range(0xF0, 0xFA)), length=42, salt=bytes(range(13)))
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_argon2id_depends_on_password_salt_and_cost():
    a = argon2id(b"password", b"somesalt" * 2, EVALUATION_COST)
    assert len(a) == 32
    assert a == argon2id(b"password", b"somesalt" * 2, EVALUATION_COST)
    assert a != argon2id(b"passwore", b"somesalt" * 2, EVALUATION_COST)
    assert a != argon2id(b"password", b"somesalt" * 2 + b"!", EVALUATION_COST)
    assert a != argon2id(b"password", b"somesalt" * 2, KdfCost(64, 2, 1))


def test_cost_is_checked():
    with pytest.raises(ParameterSetError):
        KdfCost(memory_kib=8, iterations=1, lanes=4)
    with pytest.raises(ParameterSetError):
        KdfCost(memory_kib=64, iterations=0, lanes=1)
    assert DEVICE_COST.memory_kib >= 64 * 1024


def test_verifier_and_key_are_independent_outputs():
    s = np.arange(16, dtype=np.int64) * 4000
    verifier, key = derive(s, b"\x07" * 16, EVALUATION_COST)
    assert len(verifier) == len(key) == 32 and verifier != key
    assert derive(s, b"\x07" * 16, EVALUATION_COST) == (verifier, key)
    s2 = s.copy()
    s2[3] += 1
    assert derive(s2, b"\x07" * 16, EVALUATION_COST)[0] != verifier


def test_derive_known_answer():
    """Pins the construction (encoding of s, Argon2id, HKDF labels) so a change cannot slip by."""
    s = np.arange(16, dtype=np.int64) * 4096 + 1
    verifier, key = derive(s, bytes(range(16)), EVALUATION_COST)
    digest = hashlib.sha256(verifier + key).hexdigest()
    assert secret_bytes(s)[:8] == bytes([1, 0, 0, 0, 1, 16, 0, 0])
    assert digest == PINNED_DERIVE


def test_label_binds_both_outputs_and_the_empty_label_adds_nothing():
    s = np.arange(16, dtype=np.int64)
    plain = derive(s, b"\0" * 16, EVALUATION_COST)
    assert derive(s, b"\0" * 16, EVALUATION_COST, b"") == plain
    alice = derive(s, b"\0" * 16, EVALUATION_COST, b"alice")
    bob = derive(s, b"\0" * 16, EVALUATION_COST, b"bob")
    assert alice[0] != plain[0] and alice[1] != plain[1]
    assert alice[0] != bob[0] and alice[1] != bob[1]


def test_secret_sampling_is_uniform_mod_q_and_deterministic():
    q = 65537
    s = sample_secret(b"\x11" * 32, 16, q)
    assert s.shape == (16,) and s.dtype == np.int64 and np.all((0 <= s) & (s < q))
    np.testing.assert_array_equal(s, sample_secret(b"\x11" * 32, 16, q))
    assert not np.array_equal(s, sample_secret(b"\x12" * 32, 16, q))
    many = np.concatenate([sample_secret(bytes([i]) * 32, 16, q) for i in range(200)])
    # A uniform value mod q has mean (q-1)/2 and standard deviation ~q/sqrt(12); 3200 draws.
    assert abs(many.mean() - (q - 1) / 2) < 4 * q / np.sqrt(12 * len(many))
    assert many.max() > q * 0.99 and many.min() < q * 0.01


PINNED_DERIVE = "5ece6dcc88fffb8a5702f4a11c7569236300a6dd17e5298f72bea25177885d22"
