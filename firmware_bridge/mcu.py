"""The microcontroller's firmware logic: one request frame in, one answer frame out.

No transport here (that is `simulator.py`), so the rules can be tested directly with an injected
clock. The rules, specified in PROTOCOL.md:

- GET_CHALLENGE draws a fresh 32-byte nonce from the OS CSPRNG; there is one outstanding nonce at
  a time, it expires after `nonce_ttl` seconds and the next UNLOCK consumes it whatever the result,
  so a replayed signature meets either no nonce or a different one.
- ENROLL_PUBKEY and REMOVE_USER are honoured only in provisioning mode (a kiosk jumper, not a
  message: nothing on the wire can switch it on).
- Hardened mode: PEPPER_MAC answers HMAC-SHA256(pepper, u8 len(user) || user || data). Outside
  provisioning mode every PEPPER_MAC and every failed UNLOCK is a failed attempt until a successful
  UNLOCK clears the count; the count is written to flash before the MAC is released, so cutting the
  power cannot buy a free guess. From `max_failures` consecutive failures on, each failure locks
  PEPPER_MAC and UNLOCK for `backoff_base * 2**(failures - max_failures)` seconds (at most
  `backoff_max`); the lock survives restarts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from latticelock.firmware_bridge import mcu_state
from latticelock.firmware_bridge.errors import MessageError, StateError, UnknownMessageError
from latticelock.firmware_bridge.framing import MAX_PAYLOAD, PROTOCOL_VERSION, Frame
from latticelock.firmware_bridge.keys import verify_unlock
from latticelock.firmware_bridge.messages import (
    NONCE_SIZE,
    REQUESTS,
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
    clip_detail,
    decode_message,
)

FIRMWARE = "latticelock-sim/1"
MAX_USERS = 64
# An unknown user's signature is checked against this key (RFC 8032's first test key) so that both
# kinds of rejection cost the same; the result is ignored, as the user has no key.
_DUMMY_PUBLIC_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def pepper_mac(pepper: bytes, user: str, data: bytes) -> bytes:
    """HMAC-SHA256(pepper, u8 len(user) || user || data); the length prefix keeps (user, data) unambiguous."""
    raw = user.encode("utf-8")
    mac = crypto_hmac.HMAC(pepper, hashes.SHA256())
    mac.update(bytes([len(raw)]) + raw + bytes(data))
    return mac.finalize()


class Mcu:
    """The firmware: holds the state loaded from `state_dir` and answers request frames."""

    def __init__(
        self,
        state_dir: Path,
        *,
        provisioning: bool = False,
        clock: Callable[[], float] = time.time,
        nonce_ttl: float = 30.0,
        max_failures: int = 5,
        backoff_base: float = 30.0,
        backoff_max: float = 86400.0,
    ) -> None:
        if not 1 <= max_failures <= 255:
            raise ValueError("max_failures must be in [1, 255]")
        if nonce_ttl <= 0 or backoff_base <= 0 or backoff_max < backoff_base:
            raise ValueError("nonce_ttl and backoff_base must be positive and backoff_max >= backoff_base")
        self.state_dir = Path(state_dir)
        self.state = mcu_state.load_or_create(self.state_dir)
        self.provisioning = provisioning
        self.clock = clock
        self.nonce_ttl = nonce_ttl
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._nonce: tuple[bytes, float] | None = None

    # --- dispatch -------------------------------------------------------------------------------

    def handle_frame(self, frame: Frame) -> Frame:
        """The answer to one request frame, with the request's sequence number."""
        try:
            request = decode_message(frame.type, frame.payload)
        except UnknownMessageError as exc:
            answer: Message = Error(ErrorCode.UNKNOWN_TYPE, detail=clip_detail(str(exc)))
        except MessageError as exc:
            answer = Error(ErrorCode.MALFORMED, detail=clip_detail(str(exc)))
        else:
            answer = self.handle(request)
        return Frame(answer.TYPE, frame.seq, answer.encode_payload())

    def handle(self, request: Message) -> Message:
        """The answer to one decoded request (an Error message for a refusal, never an exception)."""
        if not isinstance(request, REQUESTS):
            return Error(ErrorCode.UNEXPECTED, detail=f"{type(request).__name__} is not a request")
        handler = {
            Hello: self._hello,
            GetChallenge: self._get_challenge,
            Unlock: self._unlock,
            EnrollPubkey: self._enroll,
            RemoveUser: self._remove,
            Status: self._status,
            PepperMac: self._pepper_mac,
        }[type(request)]
        try:
            return handler(request)
        except StateError as exc:
            return Error(ErrorCode.INTERNAL, detail=clip_detail(str(exc)))

    # --- handlers -------------------------------------------------------------------------------

    def _hello(self, _: Hello) -> Message:
        return Version(PROTOCOL_VERSION, FIRMWARE, self.state.device_id, self.provisioning, MAX_PAYLOAD)

    def _get_challenge(self, _: GetChallenge) -> Message:
        nonce = secrets.token_bytes(NONCE_SIZE)
        self._nonce = (nonce, self.clock())
        return Challenge(nonce, round(self.nonce_ttl * 1000))

    def _unlock(self, request: Unlock) -> Message:
        locked = self._lockout_error()
        if locked is not None:
            return locked
        outstanding, self._nonce = self._nonce, None
        if outstanding is None:
            return Error(ErrorCode.NO_CHALLENGE, detail="request a challenge first; each one is single-use")
        nonce, issued = outstanding
        if not 0 <= self.clock() - issued <= self.nonce_ttl:
            return Error(ErrorCode.NO_CHALLENGE, detail="the challenge expired")
        public_key = self.state.users.get(request.user)
        valid = verify_unlock(public_key or _DUMMY_PUBLIC_KEY, nonce, request.user, request.signature)
        if valid and public_key is not None:
            self.state.failures = 0
            self.state.locked_until_ms = 0
            self.state.unlocks += 1
            self._save()
            return Unlocked(request.user)
        self._record_failure()
        return Error(ErrorCode.REJECTED, detail="signature does not verify")

    def _enroll(self, request: EnrollPubkey) -> Message:
        if not self.provisioning:
            return Error(ErrorCode.NOT_PROVISIONING, detail="enrolment needs provisioning mode")
        replaced = request.user in self.state.users
        if not replaced and len(self.state.users) >= MAX_USERS:
            return Error(ErrorCode.STORAGE_FULL, detail=f"at most {MAX_USERS} users")
        self.state.users[request.user] = bytes(request.public_key)
        self._save()
        return Enrolled(request.user, replaced)

    def _remove(self, request: RemoveUser) -> Message:
        if not self.provisioning:
            return Error(ErrorCode.NOT_PROVISIONING, detail="removing users needs provisioning mode")
        if request.user not in self.state.users:
            return Error(ErrorCode.UNKNOWN_USER, detail="no such user")
        del self.state.users[request.user]
        self._save()
        return Removed(request.user)

    def _status(self, _: Status) -> Message:
        return StatusReport(
            provisioning=self.provisioning,
            users=len(self.state.users),
            failures=min(self.state.failures, 0xFFFF),
            max_failures=self.max_failures,
            lockout_remaining_ms=round(self.lockout_remaining() * 1000),
            lockouts=self.state.lockouts,
            unlocks=self.state.unlocks,
        )

    def _pepper_mac(self, request: PepperMac) -> Message:
        if not self.provisioning:
            locked = self._lockout_error()
            if locked is not None:
                return locked
            # Count first, answer second: the attempt is on flash before the MAC leaves the chip.
            self._record_failure()
        return Mac(pepper_mac(self.state.pepper, request.user, request.data))

    # --- lockout --------------------------------------------------------------------------------

    def lockout_remaining(self) -> float:
        """Seconds until PEPPER_MAC and UNLOCK are allowed again (0 when not locked)."""
        remaining = self.state.locked_until_ms / 1000 - self.clock()
        # A clock set backwards must not stretch a lock beyond the longest back-off.
        return min(max(remaining, 0.0), self.backoff_max)

    def _lockout_error(self) -> Error | None:
        remaining = self.lockout_remaining()
        if remaining <= 0:
            return None
        return Error(
            ErrorCode.LOCKED_OUT,
            retry_after_ms=max(1, round(remaining * 1000)),
            detail=f"{self.state.failures} consecutive failed attempts",
        )

    def _record_failure(self) -> None:
        state = self.state
        state.failures += 1
        if state.failures >= self.max_failures:
            delay = min(self.backoff_base * 2 ** min(state.failures - self.max_failures, 32), self.backoff_max)
            state.locked_until_ms = round((self.clock() + delay) * 1000)
            state.lockouts += 1
        self._save()

    def _save(self) -> None:
        mcu_state.save(self.state_dir, self.state)

