"""The device passcode, kept on the microcontroller only: a salted, slow verifier and its delays.

PBKDF2-HMAC-SHA256 (from `cryptography`; SHA-256 is what MCUs accelerate in hardware, Argon2id's
memory does not fit one) with a per-device random salt; the stored verifier is compared in constant
time. Every guess is counted on flash before it is checked, and failures buy escalating delays
that no host can reset (iOS-like: four free, then 1 min, 5 min, 15 min, 15 min, then 1 h each).

The passcode authorises the administrator (enrolment and removal in provisioning mode), unlocks
the device when the face cannot (and clears the face lockout), and is required after a restart.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

SALT_SIZE = 16
HASH_SIZE = 32
ITERATIONS = 200_000
MIN_LENGTH, MAX_LENGTH = 6, 64
FREE_FAILURES = 4
_DELAYS_S = (60.0, 300.0, 900.0, 900.0, 3600.0)


class PasscodeFormatError(ValueError):
    """A new passcode that is too short or too long."""


def check_format(passcode: str) -> bytes:
    raw = passcode.encode("utf-8")
    if not MIN_LENGTH <= len(passcode) or len(raw) > MAX_LENGTH:
        raise PasscodeFormatError(f"a passcode has {MIN_LENGTH} to {MAX_LENGTH} characters")
    return raw


def _stretch(passcode: str, salt: bytes, iterations: int) -> bytes:
    return PBKDF2HMAC(hashes.SHA256(), HASH_SIZE, salt, iterations).derive(passcode.encode("utf-8"))


def new_verifier(passcode: str, iterations: int = ITERATIONS) -> tuple[bytes, bytes]:
    """(salt, verifier) for a new passcode."""
    check_format(passcode)
    salt = os.urandom(SALT_SIZE)
    return salt, _stretch(passcode, salt, iterations)


def matches(passcode: str, salt: bytes, verifier: bytes, iterations: int) -> bool:
    try:
        candidate = _stretch(passcode, salt, iterations)
    except (UnicodeEncodeError, ValueError):
        return False
    return hmac.compare_digest(candidate, verifier)


def delay_after(failures: int) -> float:
    """Seconds before the next guess after `failures` consecutive wrong passcodes."""
    if failures <= FREE_FAILURES:
        return 0.0
    return _DELAYS_S[min(failures - FREE_FAILURES, len(_DELAYS_S)) - 1]
