"""Ed25519 keys derived from the face key, and the unlock signature the microcontroller checks.

The 32-byte key that L2FE-Hash reproduces is expanded with HKDF-SHA256 under a label naming the
purpose, so the unlock key, a wallet key and any later key are independent; the private key exists
only in memory while a face is being verified. The microcontroller stores the public key alone.

An unlock signature covers `UNLOCK_CONTEXT || nonce || user`: the fresh nonce makes it single-use,
the user binds it to one account, and the context keeps it from being valid in any other protocol.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from latticelock.firmware_bridge.messages import NONCE_SIZE

UNLOCK_LABEL = b"latticelock/unlock/ed25519"
UNLOCK_CONTEXT = b"latticelock/unlock/v1\x00"
FACE_KEY_SIZE = 32


def derive_ed25519(face_key: bytes, label: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key for `label`, derived from the 32-byte face key with HKDF-SHA256."""
    if len(face_key) != FACE_KEY_SIZE:
        raise ValueError(f"face key must be {FACE_KEY_SIZE} bytes, got {len(face_key)}")
    if not label:
        raise ValueError("a key derivation label is required")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(bytes(face_key))
    return Ed25519PrivateKey.from_private_bytes(seed)


def unlock_key(face_key: bytes) -> Ed25519PrivateKey:
    """The key pair whose public half is enrolled on the microcontroller."""
    return derive_ed25519(face_key, UNLOCK_LABEL)


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key, as ENROLL_PUBKEY carries it."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def unlock_message(nonce: bytes, user: str) -> bytes:
    """The exact bytes an unlock signature covers."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return UNLOCK_CONTEXT + bytes(nonce) + user.encode("utf-8")


def sign_unlock(key: Ed25519PrivateKey, nonce: bytes, user: str) -> bytes:
    """`user`'s 64-byte Ed25519 signature over the microcontroller's `nonce`."""
    return key.sign(unlock_message(nonce, user))


def verify_unlock(public_key: bytes, nonce: bytes, user: str, signature: bytes) -> bool:
    """Whether `signature` is `user`'s signature over `nonce`; False for a malformed key or signature."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, unlock_message(nonce, user))
    except (InvalidSignature, ValueError):
        return False
    return True
