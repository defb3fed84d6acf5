"""What the microcontroller derives from its pepper: the sealing key for helper data on the host's
flash, the verifier tag of a lattice secret, and the per-user face key its signing keys come from.

The pepper (32 bytes from the CSPRNG, generated once) never leaves the chip; every key below is an
HKDF-SHA256 output of it under its own label, so they are independent.

Sealed helper data (what the host stores in a hardened record), ChaCha20-Poly1305:

    sealed = nonce 12 | AEAD(key_seal, nonce, plaintext, ad)
    plaintext = m u8 | c (m x u32 LE) | tag 32 | radius_sq u64 LE | wallet_radius_sq u64 LE
    ad = "latticelock/sealed/v3" | device_id 16 | lattice_id 32 | u8 len(user) | user | generation u32 LE

radius_sq is the record's unlock radius, wallet_radius_sq its wallet radius (never larger). v3 added the
wallet radius; a v2 blob (one radius, 8 bytes shorter) is refused: re-enrol its user.

The associated data binds a blob to this chip, its lattice, one user and one generation, so a blob
copied to another user's name, another device or an older generation fails to open. Without the
chip, c (= A s + e, from which the lattice attack recovers the face) is ciphertext.

tag = HMAC-SHA256(key_tag, u8 len(user) | user | generation u32 LE | s as n x u32 LE); compared in
constant time. face_key = HMAC-SHA256(key_face, same input): the root of the user's Ed25519 unlock and
wallet keys (`keys`). A thief with the sealed blobs but not the pepper can test nothing offline.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_SIZE = 12
TAG_SIZE = 32
AD_LABEL = b"latticelock/sealed/v3"
_V2_SHORTER = 8  # a v2 blob had no wallet_radius_sq


class SealError(ValueError):
    """A sealed blob that does not open for this chip, lattice, user and generation (one reason for all;
    only an old-format blob, known by its public size, is named as such)."""


class OldFormatError(SealError):
    """A blob of an earlier sealed format: its size says so, and so may the chip."""


def _subkey(pepper: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"latticelock/mcu/" + label).derive(pepper)


@dataclass(frozen=True)
class ChipKeys:
    """The pepper's three independent keys (in the chip's RAM only)."""

    seal: bytes
    tag: bytes
    face: bytes

    @classmethod
    def from_pepper(cls, pepper: bytes) -> "ChipKeys":
        return cls(_subkey(pepper, b"seal/v2"), _subkey(pepper, b"tag/v2"), _subkey(pepper, b"face-key/v2"))


def _user_input(user: str, generation: int, s: np.ndarray) -> bytes:
    raw = user.encode("utf-8")
    return bytes([len(raw)]) + raw + struct.pack("<I", generation) + np.asarray(s, dtype="<u4").tobytes()


def secret_tag(keys: ChipKeys, user: str, generation: int, s: np.ndarray) -> bytes:
    return hmac.new(keys.tag, _user_input(user, generation, s), "sha256").digest()


def face_key(keys: ChipKeys, user: str, generation: int, s: np.ndarray) -> bytes:
    """The 32-byte root of the user's signing keys: needs the pepper and the secret the face decodes to."""
    return hmac.new(keys.face, b"face-key\x00" + _user_input(user, generation, s), "sha256").digest()


def tags_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _ad(device_id: bytes, lattice_id: bytes, user: str, generation: int) -> bytes:
    raw = user.encode("utf-8")
    return AD_LABEL + device_id + lattice_id + bytes([len(raw)]) + raw + struct.pack("<I", generation)


def seal(keys: ChipKeys, device_id: bytes, lattice_id: bytes, user: str, generation: int,
         c: np.ndarray, tag: bytes, radius_sq: int, wallet_radius_sq: int) -> bytes:
    c = np.asarray(c, dtype="<u4")
    plaintext = bytes([len(c)]) + c.tobytes() + tag + struct.pack("<QQ", radius_sq, wallet_radius_sq)
    nonce = os.urandom(NONCE_SIZE)
    return nonce + ChaCha20Poly1305(keys.seal).encrypt(nonce, plaintext, _ad(device_id, lattice_id, user, generation))


@dataclass(frozen=True)
class Unsealed:
    c: np.ndarray  # int64 [m]
    tag: bytes
    radius_sq: int  # unlock
    wallet_radius_sq: int  # wallet purposes; <= radius_sq


def unseal(keys: ChipKeys, device_id: bytes, lattice_id: bytes, user: str, generation: int, sealed: bytes, m: int) -> Unsealed:
    """Open a sealed blob; SealError for anything that is not this chip's blob of this user and generation."""
    if len(sealed) == sealed_size(m) - _V2_SHORTER:
        # The size is public, so naming the old format tells a thief nothing.
        raise OldFormatError("sealed helper data of format v2 (no wallet radius) refused: enrol the user again")
    if len(sealed) != sealed_size(m):
        raise SealError("sealed helper data refused")
    try:
        plain = ChaCha20Poly1305(keys.seal).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], _ad(device_id, lattice_id, user, generation))
    except InvalidTag:
        raise SealError("sealed helper data refused") from None
    if plain[0] != m:
        raise SealError("sealed helper data refused")
    c = np.frombuffer(plain, dtype="<u4", count=m, offset=1).astype(np.int64)
    tag = plain[1 + 4 * m : 1 + 4 * m + TAG_SIZE]
    radius_sq, wallet_radius_sq = struct.unpack_from("<QQ", plain, 1 + 4 * m + TAG_SIZE)
    return Unsealed(c, tag, radius_sq, wallet_radius_sq)


def sealed_size(m: int) -> int:
    return NONCE_SIZE + 1 + 4 * m + TAG_SIZE + 2 * 8 + 16
