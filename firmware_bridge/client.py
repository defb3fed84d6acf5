"""The device's side of the protocol: one method per request, refusals raised as typed errors.

    with McuClient(open_link("/dev/ttyACM0")) as mcu:
        mcu.hello()
        session = mcu.open_session(Purpose.UNLOCK, k=2, n=3)   # counted on the chip from here
        mcu.load_record("alice", generation, sealed)           # each user's sealed helper data
        verdict = mcu.probe(vector)                             # one per frame: pending, accept or reject

Every exchange the device has with the microcontroller goes through this class. Methods raise
`McuError` subclasses for the microcontroller's refusals (`LockedOutError`, `PasscodeRequiredError`,
`WrongPasscodeError`, `NotAuthorisedError`, `CollisionError`, `RejectedError`, `SessionError`,
`NotProvisioningError`), `ProtocolError` for an answer that breaks the protocol and
`LinkTimeoutError`/`LinkError` for the wire. Methods are serialised by a lock, so threads may share
one client.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

from latticelock.firmware_bridge.errors import (
    CollisionError,
    LockedOutError,
    McuError,
    NotAuthorisedError,
    NotProvisioningError,
    PasscodeRequiredError,
    ProtocolError,
    RejectedError,
    SessionError,
    WrongPasscodeError,
)
from latticelock.firmware_bridge.framing import PROTOCOL_VERSION
from latticelock.firmware_bridge.link import Link
from latticelock.firmware_bridge.messages import (
    MAX_CHUNK,
    AbortUser,
    ChunkOk,
    CloseSession,
    CommitUser,
    EnrollFace,
    Error,
    ErrorCode,
    FaceEnrolled,
    Hello,
    LatticeChunk,
    LatticeCommit,
    LatticeReady,
    ListUsers,
    LoadRecord,
    Message,
    OpenSession,
    Outcome,
    Passcode,
    PasscodeOk,
    PasscodeSet,
    Probe,
    Purpose,
    RecordLoaded,
    Removed,
    RemoveUser,
    Session,
    SessionClosed,
    SetPasscode,
    Status,
    StatusReport,
    UserAborted,
    UserCommitted,
    UserList,
    VerdictMessage,
    Version,
    decode_user_list,
    encode_vector,
)

_ERRORS: dict[int, type[McuError]] = {
    ErrorCode.REJECTED: RejectedError,
    ErrorCode.NO_SESSION: SessionError,
    ErrorCode.NOT_PROVISIONING: NotProvisioningError,
    ErrorCode.LOCKED_OUT: LockedOutError,
    ErrorCode.PASSCODE_REQUIRED: PasscodeRequiredError,
    ErrorCode.WRONG_PASSCODE: WrongPasscodeError,
    ErrorCode.NOT_AUTHORISED: NotAuthorisedError,
    ErrorCode.COLLISION: CollisionError,
}

M = TypeVar("M", bound=Message)


def raise_for_error(error: Error) -> None:
    """Raise the McuError subclass that matches an ERROR message."""
    cls = _ERRORS.get(error.code, McuError)
    raise cls(error.code, error.code_name, error.detail, error.retry_after_ms / 1000)


@dataclass(frozen=True)
class Verdict:
    """The chip's answer to one probe."""

    outcome: Outcome
    user: str | None
    public_key: bytes | None
    signature: bytes | None
    probes_left: int


@dataclass(frozen=True)
class UserEntry:
    name: str
    active_generation: int  # 0: none
    pending_generation: int  # 0: none


class McuClient:
    """Requests to the microcontroller over a `Link`."""

    def __init__(self, link: Link, timeout: float | None = None) -> None:
        self.link = link
        self.timeout = timeout
        self._lock = threading.Lock()

    # --- status and passcode --------------------------------------------------------------------

    def hello(self) -> Version:
        """The microcontroller's protocol and firmware versions, device id, mode, passcode and lattice."""
        version = self._request(Hello(), Version)
        if version.protocol != PROTOCOL_VERSION:
            raise ProtocolError(f"microcontroller speaks protocol {version.protocol}, expected {PROTOCOL_VERSION}")
        return version

    def status(self) -> dict[str, Any]:
        """Mode, user count, counters and lockouts, as a JSON-ready dict."""
        report = self._request(Status(), StatusReport)
        return {
            "provisioning": report.provisioning,
            "users": report.users,
            "failures": report.failures,
            "max_failures": report.max_failures,
            "lockout_remaining_s": report.lockout_remaining_ms / 1000,
            "passcode_required": report.passcode_required,
            "passcode_failures": report.passcode_failures,
            "passcode_lockout_remaining_s": report.passcode_lockout_ms / 1000,
            "attempts_left_today": report.attempts_left_today,
            "lockouts": report.lockouts,
            "unlocks": report.unlocks,
            "admin": report.admin,
        }

    def set_passcode(self, new: str, current: str = "") -> None:
        """Set the device passcode (the first one in provisioning mode; later ones need the current one)."""
        self._request(SetPasscode(current, new), PasscodeSet)

    def passcode(self, passcode: str) -> bool:
        """Enter the passcode: unlocks the device, lifts the face lockout; True if it opened the admin window."""
        return self._request(Passcode(passcode), PasscodeOk).admin

    # --- provisioning ---------------------------------------------------------------------------

    def provision_lattice(self, parameter_set: str, seed: bytes, tables: bytes, radius_sq: int, wallet_radius_sq: int,
                          min_probe_sq: int) -> bytes:
        """Upload the device lattice's decoding tables in chunks; returns the lattice id the chip binds records to.

        `radius_sq` is the largest unlock radius any record may have, `wallet_radius_sq` the largest
        wallet radius (the wallet's operating point): the chip caps every record's radii by them.
        `min_probe_sq` is the floor on a probe's squared length (0: none): a probe vector shorter than it
        matches no record. The public mean face and vectors pulled toward it are probes anyone can make
        and sit near many templates; real faces are never that short, so a floor below every real face
        stops them at no cost to genuine users. The chip refuses (MALFORMED) a floor of 2^25 or more, the bound of its radii."""
        for offset in range(0, len(tables), MAX_CHUNK):
            chunk = tables[offset : offset + MAX_CHUNK]
            received = self._request(LatticeChunk(offset, chunk), ChunkOk).received
            if received != offset + len(chunk):
                raise ProtocolError(f"microcontroller holds {received} bytes of the tables, expected {offset + len(chunk)}")
        digest = hashlib.sha256(tables).digest()
        return self._request(LatticeCommit(parameter_set, seed, radius_sq, wallet_radius_sq, min_probe_sq, len(tables), digest), LatticeReady).lattice_id

    def enroll_face(self, user: str, generation: int, radius_sq: int, wallet_radius_sq: int, vector) -> FaceEnrolled:
        """Stage `user`'s new record (pending until `commit_user`): the sealed helper data and the unlock public key.

        The chip seals both radii (squared) into the record: `radius_sq` decides unlocks, `wallet_radius_sq`
        wallet addresses and signatures. It refuses (MALFORMED) unless 0 < wallet_radius_sq <= radius_sq,
        radius_sq is within the lattice's radius and wallet_radius_sq within its wallet radius."""
        return self._request(EnrollFace(user, generation, radius_sq, wallet_radius_sq, encode_vector(vector)), FaceEnrolled)

    def commit_user(self, user: str, generation: int, sealed: bytes) -> None:
        """Make the pending enrolment active; `sealed` is the blob the host stored (its digest is the proof)."""
        self._request(CommitUser(user, generation, hashlib.sha256(sealed).digest()), UserCommitted)

    def abort_user(self, user: str) -> None:
        self._request(AbortUser(user), UserAborted)

    def remove_user(self, user: str) -> None:
        """Forget `user` (provisioning mode, administrator)."""
        self._request(RemoveUser(user), Removed)

    def list_users(self) -> list[UserEntry]:
        """Every user the chip knows, with its active and pending generations."""
        entries: list[UserEntry] = []
        while True:
            listing = self._request(ListUsers(len(entries)), UserList)
            batch = [UserEntry(*entry) for entry in decode_user_list(listing.entries)]
            entries += batch
            if len(entries) >= listing.total or not batch:
                return entries

    # --- sessions -------------------------------------------------------------------------------

    def open_session(self, purpose: Purpose, k: int = 0, n: int = 0, account: int = 0, message: bytes = b"") -> Session:
        """Open a session (replacing any other); for a face purpose this is the counted attempt."""
        return self._request(OpenSession(int(purpose), k, n, account, message), Session)

    def load_record(self, user: str, generation: int, sealed: bytes) -> None:
        self._request(LoadRecord(user, generation, sealed), RecordLoaded)

    def probe(self, vector) -> Verdict:
        answer = self._request(Probe(encode_vector(vector)), VerdictMessage)
        try:
            outcome = Outcome(answer.outcome)
        except ValueError:
            raise ProtocolError(f"unknown probe outcome {answer.outcome}") from None
        accepted = outcome is Outcome.ACCEPT
        return Verdict(outcome, answer.user if accepted else None, answer.public_key if accepted else None,
                       answer.signature if accepted else None, answer.probes_left)

    def close_session(self) -> None:
        self._request(CloseSession(), SessionClosed)

    # --- plumbing -------------------------------------------------------------------------------

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
