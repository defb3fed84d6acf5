"""The device's side of the protocol: one method per request, refusals raised as typed errors.

    with McuClient(open_link("/dev/ttyACM0")) as mcu:
        mcu.hello()
        mac = mcu.mac_for("alice")            # hardened mode: pass as `mac=` to the L2FE derivation
        ...                                   # L2FE-Hash reproduces the 32-byte face key
        mcu.unlock_with_face_key("alice", face_key)

Each method raises `McuError` subclasses for the microcontroller's refusals (`RejectedError`,
`ChallengeError`, `NotProvisioningError`, `LockedOutError`), `ProtocolError` for an answer that
breaks the protocol and `LinkTimeoutError`/`LinkError` for the wire. Methods are serialised by a
lock, so threads may share one client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from latticelock.firmware_bridge.errors import (
    ChallengeError,
    LockedOutError,
    McuError,
    NotProvisioningError,
    ProtocolError,
    RejectedError,
)
from latticelock.firmware_bridge.framing import PROTOCOL_VERSION
from latticelock.firmware_bridge.keys import public_key_bytes, sign_unlock, unlock_key
from latticelock.firmware_bridge.link import Link
from latticelock.firmware_bridge.messages import (
    Challenge,
    EnrollPubkey,
    Enrolled,
    Error,
    ErrorCode,
    GetChallenge,
    Hello,
    Mac,
    Message,
    PepperMac,
    Removed,
    RemoveUser,
    Status,
    StatusReport,
    Unlock,
    Unlocked,
    Version,
)

_ERRORS: dict[int, type[McuError]] = {
    ErrorCode.REJECTED: RejectedError,
    ErrorCode.NO_CHALLENGE: ChallengeError,
    ErrorCode.NOT_PROVISIONING: NotProvisioningError,
    ErrorCode.LOCKED_OUT: LockedOutError,
}

M = TypeVar("M", bound=Message)


def raise_for_error(error: Error) -> None:
    """Raise the McuError subclass that matches an ERROR message."""
    cls = _ERRORS.get(error.code, McuError)
    raise cls(error.code, error.code_name, error.detail, error.retry_after_ms / 1000)


class McuClient:
    """Requests to the microcontroller over a `Link`."""

    def __init__(self, link: Link, timeout: float | None = None) -> None:
        self.link = link
        self.timeout = timeout
        self._lock = threading.Lock()

    def hello(self) -> Version:
        """The microcontroller's protocol and firmware versions, device id and mode."""
        version = self._request(Hello(), Version)
        if version.protocol != PROTOCOL_VERSION:
            raise ProtocolError(f"microcontroller speaks protocol {version.protocol}, expected {PROTOCOL_VERSION}")
        return version

    def get_challenge(self) -> bytes:
        """A fresh 32-byte nonce; it replaces any earlier one and is valid for one UNLOCK."""
        return self._request(GetChallenge(), Challenge).nonce

    def unlock(self, user: str, signature: bytes) -> None:
        """Present `user`'s signature over the current nonce; raises RejectedError if it does not verify."""
        self._request(Unlock(user, signature), Unlocked)

    def enroll_pubkey(self, user: str, public_key: bytes) -> bool:
        """Store `user`'s unlock public key (provisioning mode only); True if it replaced an older key."""
        return self._request(EnrollPubkey(user, public_key), Enrolled).replaced

    def remove_user(self, user: str) -> None:
        """Forget `user`'s public key (provisioning mode only)."""
        self._request(RemoveUser(user), Removed)

    def status(self) -> dict[str, Any]:
        """Mode, user count and the attempt counters, as a JSON-ready dict."""
        report = self._request(Status(), StatusReport)
        return {
            "provisioning": report.provisioning,
            "users": report.users,
            "failures": report.failures,
            "max_failures": report.max_failures,
            "lockout_remaining_s": report.lockout_remaining_ms / 1000,
            "lockouts": report.lockouts,
            "unlocks": report.unlocks,
        }

    def pepper_mac(self, user: str, data: bytes) -> bytes:
        """HMAC-SHA256 under the microcontroller's pepper; counts as an attempt until an unlock succeeds."""
        return self._request(PepperMac(user, data), Mac).mac

    def mac_for(self, user: str) -> Callable[[bytes], bytes]:
        """`pepper_mac` bound to `user`: the `mac` callable the hardened L2FE derivation takes."""
        return lambda data: self.pepper_mac(user, data)

    def enroll_face_key(self, user: str, face_key: bytes) -> bytes:
        """Derive `user`'s unlock key pair from the face key and enrol its public half; returns it."""
        public_key = public_key_bytes(unlock_key(face_key))
        self.enroll_pubkey(user, public_key)
        return public_key

    def unlock_with_face_key(self, user: str, face_key: bytes) -> None:
        """The whole unlock: fetch a nonce, sign it with the key derived from the face key, present it."""
        key = unlock_key(face_key)
        self.unlock(user, sign_unlock(key, self.get_challenge(), user))

    def close(self) -> None:
        """Close the link."""
        self.link.close()

    def __enter__(self) -> McuClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, request: Message, expected: type[M]) -> M:
        with self._lock:
            answer = self.link.request(request, self.timeout)
        if isinstance(answer, Error):
            raise_for_error(answer)
        if not isinstance(answer, expected):
            raise ProtocolError(f"expected {expected.__name__} in answer to {type(request).__name__}, got {type(answer).__name__}")
        return answer
