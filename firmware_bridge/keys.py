"""Ed25519 keys derived from a 32-byte face key, and the messages they sign.

The face key is what a verified face yields: in hardened mode the microcontroller's own, derived
from its pepper and the lattice secret the face decoded to (`sealing.face_key`), never leaving the
chip; in plain mode the key L2FE-Hash reproduces on the host. It is expanded with HKDF-SHA256 under a
label naming the purpose, so the unlock key and each wallet account's key are independent.

An unlock signature covers `UNLOCK_CONTEXT || nonce || user`: the session's fresh nonce makes it
single-use, the user binds it to one account, the context keeps it from being valid in any other
protocol. A wallet signature covers the caller's message itself, so anyone can check it with the
account's public key; proving an account without a message signs `WALLET_CONTEXT || nonce`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from latticelock.firmware_bridge.messages import NONCE_SIZE

UNLOCK_LABEL = b"latticelock/unlock/ed25519"
UNLOCK_CONTEXT = b"latticelock/unlock/v1\x00"
WALLET_LABEL = b"latticelock/wallet/ed25519/v1/account/"
WALLET_CONTEXT = b"latticelock/wallet-address/v1\x00"
MAX_ACCOUNT = 2**31
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


def wallet_key(face_key: bytes, account: int = 0) -> Ed25519PrivateKey:
    """The wallet account's key pair."""
    if not 0 <= account < MAX_ACCOUNT:
        raise ValueError(f"account must be in [0, 2^31), got {account}")
    return derive_ed25519(face_key, WALLET_LABEL + str(account).encode())


def wallet_proof_message(nonce: bytes) -> bytes:
    """What an account signs to prove itself without a message (`wallet address`)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return WALLET_CONTEXT + bytes(nonce)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the key's Ed25519 signature over `message`; False for malformed input."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


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
    return verify_signature(public_key, unlock_message(nonce, user), signature)
