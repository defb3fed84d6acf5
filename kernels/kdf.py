"""Key derivation: Argon2id to make each guess expensive, HKDF to split one master into labelled outputs.

Both come from `cryptography`; nothing here is hand-written. The Argon2id cost is part of a parameter
set because it is the price a thief pays for every candidate secret tested against a stolen verifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from latticelock.kernels.errors import ParameterSetError

KEY_BYTES = 32


@dataclass(frozen=True)
class KdfCost:
    """Argon2id cost: memory in KiB, passes over it, and parallel lanes (RFC 9106 names)."""

    memory_kib: int
    iterations: int
    lanes: int

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.iterations < 1:
            raise ParameterSetError(f"Argon2id needs lanes >= 1 and iterations >= 1, got {self}")
        if self.memory_kib < 8 * self.lanes:
            raise ParameterSetError(f"Argon2id needs memory_kib >= 8 * lanes, got {self}")

    def describe(self) -> str:
        return f"Argon2id m={self.memory_kib} KiB, t={self.iterations}, p={self.lanes}"


# RFC 9106 section 4, second recommended option (for memory-constrained devices such as a Jetson).
DEVICE_COST = KdfCost(memory_kib=64 * 1024, iterations=3, lanes=4)
# Only for evaluations that measure decoding decisions, which never depend on the KDF; commands that
# use it say so in their output.
EVALUATION_COST = KdfCost(memory_kib=64, iterations=1, lanes=1)


def argon2id(password: bytes, salt: bytes, cost: KdfCost, length: int = KEY_BYTES) -> bytes:
    """Argon2id(password, salt) with the given cost."""
    kdf = Argon2id(
        salt=salt,
        length=length,
        iterations=cost.iterations,
        lanes=cost.lanes,
        memory_cost=cost.memory_kib,
    )
    return kdf.derive(password)


def hkdf(master: bytes, info: bytes, length: int = KEY_BYTES, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 expansion of `master` under the label `info`; different labels give independent outputs."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(master)
