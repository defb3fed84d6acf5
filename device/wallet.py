"""A wallet key that exists only while a face is being verified, and the address that names it.

Hardened mode (a hardware wallet): the microcontroller derives the account key from its own face key
(pepper and the lattice secret the face decoded to) and signs inside the chip after a match in the
same session; the host gets the signature and the public key only. Plain mode: the key is derived on
the host from the face key L2FE-Hash reproduces, used, and dropped. Either way the derivation is
`firmware_bridge.keys.wallet_key` (HKDF-SHA256 under a wallet label and the account number), and
nothing of the key is stored.

Why Ed25519 rather than secp256k1: any 32 HKDF output bytes are a valid Ed25519 private key (no
reduction modulo the group order, no rejection), and its signatures are deterministic (RFC 8032), so
signing needs no randomness on a device whose RNG may be weak at boot and cannot leak the key
through a repeated nonce. secp256k1 would only buy compatibility with Bitcoin/Ethereum tooling; a
chain that needs it can derive it from the same face key under its own label.

The address is the first 20 bytes of SHA-256 over a domain label and the raw public key, in hex
with the prefix "ll1"; the public key itself is printed next to signatures so anyone can check them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from latticelock.device.errors import DeviceError

ADDRESS_LABEL = b"latticelock/wallet/address/v1"
ADDRESS_PREFIX = "ll1"


def wallet_key(face_key: bytes, account: int = 0) -> Ed25519PrivateKey:
    """The account's Ed25519 key from a 32-byte face key (plain mode; the chip derives its own)."""
    from latticelock.firmware_bridge.keys import wallet_key as derive

    try:
        return derive(face_key, account)
    except ValueError as exc:
        raise DeviceError(str(exc)) from None


def address_of(public_key: bytes) -> str:
    """The wallet address ("ll1" + 40 hex digits) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise DeviceError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return ADDRESS_PREFIX + hashlib.sha256(ADDRESS_LABEL + public_key).digest()[:20].hex()


@dataclass(frozen=True)
class Signed:
    address: str
    public_key: bytes
    message: bytes
    signature: bytes


def public_key_of(face_key: bytes, account: int = 0) -> bytes:
    from latticelock.firmware_bridge.keys import public_key_bytes

    return public_key_bytes(wallet_key(face_key, account))


def address(face_key: bytes, account: int = 0) -> str:
    return address_of(public_key_of(face_key, account))


def sign(face_key: bytes, message: bytes, account: int = 0) -> Signed:
    """The account's signature over `message`, with the address and public key that check it."""
    from latticelock.firmware_bridge.keys import public_key_bytes

    key = wallet_key(face_key, account)
    public = public_key_bytes(key)
    return Signed(address_of(public), public, message, key.sign(message))


def verify(public_key: bytes, message: bytes, signature: bytes, expected_address: str | None = None) -> bool:
    """Whether `signature` is the key's signature over `message` (and the key has that address)."""
    if len(public_key) != 32:
        return False
    if expected_address is not None and address_of(public_key) != expected_address:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
