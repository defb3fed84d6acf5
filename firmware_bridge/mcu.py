"""The microcontroller's firmware logic: one request frame in, one answer frame out.

No transport here (that is `simulator.py`), so the rules can be tested directly with an injected
clock. The microcontroller decides every face itself (hardened mode v2, PROTOCOL.md):

- The host opens a session (OPEN_SESSION) for an unlock, a wallet address or a wallet signature.
  Opening it is the attempt: it is counted on flash before the session exists, and only an accepted
  match clears the count. The host loads the users' sealed helper data (LOAD_RECORD; the chip opens
  it with a key derived from its pepper and checks it against the digest it keeps per user), then
  sends one probe vector per frame (PROBE). The chip decodes each probe against every loaded user
  (`lattice_match`), checks the recovered secret against the sealed tag, and applies the k-of-n
  rule; it answers pending, reject, or accept with a signature made inside the chip (over the
  session nonce, or the wallet message). Nothing it sends depends on c, the secret or a key beyond
  that accept/reject and the signature.
- Limits no host can lift: n probes per session (at most `MAX_PROBES`), a session lifetime, one
  session at a time, k at least the provisioned policy's; back-off after `max_failures` counted
  attempts (doubling), a passcode after `passcode_after` of them and after every restart, and a
  daily budget of face decisions (`daily_attempts`, refunded by an accepted unlock) that bounds even
  a thief who knows the passcode.
- Provisioning mode (a jumper, never a message) allows the administrator, once authenticated with
  the device passcode, to provision the device lattice, enrol (two-phase: ENROLL_FACE stages the new
  record as pending, COMMIT_USER makes it active once the host has stored it) and remove users.
  Enrolment checks the new face against every enrolled user first and refuses a collision; each
  check draws on the daily budget, so it is no free oracle either.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latticelock.firmware_bridge import mcu_state, passcode
from latticelock.firmware_bridge.errors import MessageError, StateError, UnknownMessageError
from latticelock.firmware_bridge.framing import MAX_PAYLOAD, PROTOCOL_VERSION, Frame
from latticelock.firmware_bridge.keys import (
    MAX_ACCOUNT,
    public_key_bytes,
    unlock_key,
    unlock_message,
    wallet_key,
    wallet_proof_message,
)
from latticelock.firmware_bridge.lattice_match import (
    MAX_RADIUS_SQ,
    LatticeTables,
    OpCounts,
    TableError,
    expand_matrix,
    match,
    validate,
    warm_up,
)
from latticelock.firmware_bridge.messages import (
    LATTICE_ID_SIZE,
    MAX_LISTING,
    NONCE_SIZE,
    PUBLIC_KEY_SIZE,
    REQUESTS,
    SIGNATURE_SIZE,
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
    clip_detail,
    decode_message,
    decode_vector,
    encode_user_list,
)
from latticelock.firmware_bridge.sealing import ChipKeys, OldFormatError, SealError, face_key, secret_tag, seal, tags_equal, unseal

FIRMWARE = "latticelock-sim/2"
MAX_USERS = 64
MAX_PROBES = 5
MAX_TABLES = 64 * 1024
LATTICE_LABEL = b"latticelock/device-lattice/v2"
_NO_KEY, _NO_SIGNATURE = bytes(PUBLIC_KEY_SIZE), bytes(SIGNATURE_SIZE)


@dataclass
class _Lattice:
    tables: LatticeTables
    A: np.ndarray
    rows: object
    lattice_id: bytes


@dataclass
class _Session:
    purpose: Purpose
    k: int
    n: int
    account: int
    message: bytes
    nonce: bytes
    opened: float
    loaded: dict = field(default_factory=dict)
    probes: int = 0
    matches: Counter = field(default_factory=Counter)
    secrets: dict = field(default_factory=dict)

    def wipe(self) -> None:
        self.loaded.clear()
        self.secrets.clear()


class Mcu:
    """The firmware: holds the state loaded from `state_dir` and answers request frames."""

    def __init__(
        self,
        state_dir: Path,
        *,
        provisioning: bool = False,
        clock: Callable[[], float] = time.time,
        session_ttl: float = 15.0,
        max_failures: int = 5,
        backoff_base: float = 30.0,
        backoff_max: float = 86400.0,
        passcode_after: int = 10,
        daily_attempts: int = 100,
        admin_window: float = 300.0,
        passcode_iterations: int = passcode.ITERATIONS,
    ) -> None:
        if not 1 <= max_failures < passcode_after <= 255:
            raise ValueError("need 1 <= max_failures < passcode_after <= 255")
        if session_ttl <= 0 or backoff_base <= 0 or backoff_max < backoff_base or daily_attempts < 1:
            raise ValueError("session_ttl, backoff_base and daily_attempts must be positive and backoff_max >= backoff_base")
        self.state_dir = Path(state_dir)
        mcu_state.claim(self.state_dir)
        self.state = mcu_state.load_or_create(self.state_dir)
        self.keys = ChipKeys.from_pepper(self.state.pepper)
        self.provisioning = provisioning
        self.clock = clock
        self.session_ttl = session_ttl
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.passcode_after = passcode_after
        self.daily_attempts = daily_attempts
        self.admin_window = admin_window
        self.passcode_iterations = passcode_iterations
        warm_up()
        self.lattice = self._load_lattice() if self.state.lattice_ready else None
        # A restart asks for the passcode before any face, as phones do.
        self._boot_lock = self.state.passcode_set and any(slot.active for slot in self.state.users.values())
        self._session: _Session | None = None
        self._admin_until = 0.0
        self._upload = bytearray()
        self.counts = OpCounts()
        """Every operation the decoder spent since start; `last_probe` holds one PROBE's share."""
        self.last_probe = OpCounts()

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
            Status: self._status,
            SetPasscode: self._set_passcode,
            Passcode: self._passcode,
            LatticeChunk: self._lattice_chunk,
            LatticeCommit: self._lattice_commit,
            OpenSession: self._open_session,
            LoadRecord: self._load_record,
            Probe: self._probe,
            EnrollFace: self._enroll_face,
            CommitUser: self._commit_user,
            AbortUser: self._abort_user,
            RemoveUser: self._remove_user,
            ListUsers: self._list_users,
            CloseSession: self._close_session,
        }[type(request)]
        before = (copy.deepcopy(self.state), self._boot_lock)
        try:
            return handler(request)
        except StateError as exc:
            # The flash write failed: the request had no effect, and nothing it would have released left the chip.
            self.state, self._boot_lock = before
            self._end_session()
            return Error(ErrorCode.INTERNAL, detail=clip_detail(str(exc)))

    # --- status ---------------------------------------------------------------------------------

    def _hello(self, _: Hello) -> Message:
        lattice_id = self.lattice.lattice_id if self.lattice else bytes(LATTICE_ID_SIZE)
        return Version(PROTOCOL_VERSION, FIRMWARE, self.state.device_id, self.provisioning, MAX_PAYLOAD,
                       self.state.passcode_set, lattice_id)

    def _status(self, _: Status) -> Message:
        now = self.clock()
        return StatusReport(
            provisioning=self.provisioning,
            users=sum(slot.active for slot in self.state.users.values()),
            failures=min(self.state.failures, 0xFFFF),
            max_failures=self.max_failures,
            lockout_remaining_ms=round(self.lockout_remaining() * 1000),
            passcode_required=self.passcode_required,
            passcode_failures=min(self.state.passcode_failures, 0xFFFF),
            passcode_lockout_ms=round(self._remaining("passcode_locked_until_ms", now) * 1000),
            attempts_left_today=min(self._budget(now) // 1000, 0xFFFF),
            lockouts=self.state.lockouts,
            unlocks=self.state.unlocks,
            admin=self._admin(now),
        )

    @property
    def passcode_required(self) -> bool:
        return self._boot_lock or self.state.passcode_required

    def lockout_remaining(self) -> float:
        """Seconds until a face session may be opened again (0 when not locked)."""
        return self._remaining("locked_until_ms", self.clock())

    def _remaining(self, deadline: str, now: float) -> float:
        """Seconds until the state's `deadline` (ms) passes. A clock set backwards must not stretch a lock
        beyond the longest back-off: a deadline further ahead is pulled in to that, and kept there."""
        now_ms = round(now * 1000)
        latest = now_ms + round(self.backoff_max * 1000)
        if getattr(self.state, deadline) > latest:
            setattr(self.state, deadline, latest)
            self._save()
        return max(getattr(self.state, deadline) - now_ms, 0) / 1000

    # --- passcode -------------------------------------------------------------------------------

    def _set_passcode(self, request: SetPasscode) -> Message:
        if self.state.passcode_set:
            wrong = self._guess(request.current)
            if wrong is not None:
                return wrong
        elif not self.provisioning:
            return Error(ErrorCode.NOT_PROVISIONING, detail="the first passcode is set in provisioning mode")
        try:
            salt, verifier = passcode.new_verifier(request.new, self.passcode_iterations)
        except passcode.PasscodeFormatError as exc:
            return Error(ErrorCode.MALFORMED, detail=str(exc))
        self.state.passcode_salt, self.state.passcode_verifier = salt, verifier
        self.state.passcode_iterations = self.passcode_iterations
        self._save()
        if self.provisioning:
            self._admin_until = self.clock() + self.admin_window
        return PasscodeSet()

    def _passcode(self, request: Passcode) -> Message:
        wrong = self._guess(request.passcode)
        if wrong is not None:
            return wrong
        # A correct passcode unlocks the device and lifts the face lockout, as on a phone.
        state = self.state
        state.failures, state.locked_until_ms, state.passcode_required = 0, 0, False
        state.unlocks += 1
        self._boot_lock = False
        self._save()
        if self.provisioning:
            self._admin_until = self.clock() + self.admin_window
        return PasscodeOk(self.provisioning)

    def _guess(self, guess: str) -> Error | None:
        """Check a passcode guess: counted on flash first, delays after failures. None when right."""
        state = self.state
        if not state.passcode_set:
            return Error(ErrorCode.NOT_AUTHORISED, detail="no device passcode is set")
        now = self.clock()
        remaining = self._remaining("passcode_locked_until_ms", now)
        if remaining > 0:
            return Error(ErrorCode.LOCKED_OUT, retry_after_ms=max(1, round(remaining * 1000)),
                         detail=f"{state.passcode_failures} wrong passcodes")
        state.passcode_failures += 1
        state.passcode_locked_until_ms = round((now + min(passcode.delay_after(state.passcode_failures), self.backoff_max)) * 1000)
        self._save()
        if not passcode.matches(guess, state.passcode_salt, state.passcode_verifier, state.passcode_iterations):
            delay = min(passcode.delay_after(state.passcode_failures), self.backoff_max)
            return Error(ErrorCode.WRONG_PASSCODE, retry_after_ms=round(delay * 1000),
                         detail=f"wrong passcode ({state.passcode_failures} in a row)")
        state.passcode_failures, state.passcode_locked_until_ms = 0, 0
        self._save()
        return None

    def _admin(self, now: float) -> bool:
        return self.provisioning and now <= self._admin_until

    def _require_admin(self) -> Error | None:
        if not self.provisioning:
            return Error(ErrorCode.NOT_PROVISIONING, detail="this needs provisioning mode")
        if not self.state.passcode_set:
            return Error(ErrorCode.NOT_AUTHORISED, detail="set the device passcode first")
        if not self._admin(self.clock()):
            return Error(ErrorCode.NOT_AUTHORISED, detail="enter the device passcode first")
        return None

    # --- the device lattice ---------------------------------------------------------------------

    def _lattice_chunk(self, request: LatticeChunk) -> Message:
        refused = self._require_admin() or self._users_block_lattice()
        if refused is not None:
            return refused
        if request.offset == 0:
            self._upload = bytearray()
        if request.offset != len(self._upload):
            self._upload = bytearray()
            return Error(ErrorCode.MALFORMED, detail="chunks must arrive in order")
        if len(self._upload) + len(request.data) > MAX_TABLES:
            self._upload = bytearray()
            return Error(ErrorCode.LIMIT, detail="lattice tables total at most 64 KiB")
        self._upload += request.data
        return ChunkOk(len(self._upload))

    def _lattice_commit(self, request: LatticeCommit) -> Message:
        refused = self._require_admin() or self._users_block_lattice()
        if refused is not None:
            return refused
        data, self._upload = bytes(self._upload), bytearray()
        if len(data) != request.length or hashlib.sha256(data).digest() != request.digest:
            return Error(ErrorCode.MALFORMED, detail="lattice tables incomplete or corrupted in transit")
        if (not request.parameter_set.isascii() or not 0 < request.radius_sq < MAX_RADIUS_SQ
                or not 0 < request.wallet_radius_sq <= request.radius_sq):
            return Error(ErrorCode.MALFORMED, detail="bad parameter set name or radius")
        # A floor is a squared length in the radii's units, so it shares their bound (0: no floor).
        if not 0 <= request.min_probe_sq < MAX_RADIUS_SQ:
            return Error(ErrorCode.MALFORMED, detail="bad probe floor")
        try:
            tables = LatticeTables.from_bytes(data)
            A = expand_matrix(request.seed, tables.m, tables.n, tables.q)
            rows = validate(tables, A)
        except TableError as exc:
            return Error(ErrorCode.REJECTED, detail=clip_detail(f"lattice tables refused: {exc}"))
        digest = hashlib.sha256(data).digest()
        mcu_state.save_tables(self.state_dir, data, digest)
        state = self.state
        state.parameter_set, state.lattice_seed, state.lattice_radius_sq = request.parameter_set, request.seed, request.radius_sq
        state.wallet_radius_sq, state.min_probe_sq = request.wallet_radius_sq, request.min_probe_sq
        state.lattice_digest = digest
        self._save()
        mcu_state.drop_other_tables(self.state_dir, digest)
        self.lattice = _Lattice(tables, A, rows, self._lattice_id())
        return LatticeReady(self.lattice.lattice_id)

    def _users_block_lattice(self) -> Error | None:
        if self.state.users:
            return Error(ErrorCode.LIMIT, detail="remove every user before replacing the device lattice")
        return None

    def _lattice_id(self) -> bytes:
        s = self.state
        return hashlib.sha256(LATTICE_LABEL + s.device_id + s.lattice_seed + s.lattice_digest).digest()

    def _load_lattice(self) -> _Lattice:
        data = mcu_state.load_tables(self.state_dir, self.state.lattice_digest)
        if hashlib.sha256(data).digest() != self.state.lattice_digest:
            raise StateError("the device lattice in flash does not match its digest")
        try:
            tables = LatticeTables.from_bytes(data)
        except TableError as exc:
            raise StateError(f"the device lattice in flash is unreadable: {exc}") from None
        A = expand_matrix(self.state.lattice_seed, tables.m, tables.n, tables.q)
        return _Lattice(tables, A, validate(tables, A), self._lattice_id())

    # --- sessions -------------------------------------------------------------------------------

    def _open_session(self, request: OpenSession) -> Message:
        self._end_session()
        try:
            purpose = Purpose(request.purpose)
        except ValueError:
            return Error(ErrorCode.MALFORMED, detail=f"unknown session purpose {request.purpose}")
        if self.lattice is None:
            return Error(ErrorCode.NO_LATTICE, detail="the device lattice is not provisioned")
        if purpose is Purpose.ENROL:
            refused = self._require_admin()
            if refused is not None:
                return refused
        else:
            policy_k, policy_n = self.state.policy_k, min(self.state.policy_n, MAX_PROBES)
            if not (policy_k <= request.k <= request.n <= policy_n):
                return Error(ErrorCode.LIMIT, detail=f"sessions allow k >= {policy_k} matches of n <= {policy_n} probes")
            if (purpose is Purpose.WALLET_SIGN) != bool(request.message):
                return Error(ErrorCode.MALFORMED, detail="a message to sign goes with a wallet-sign session only")
            if request.account >= MAX_ACCOUNT:
                return Error(ErrorCode.MALFORMED, detail=f"a wallet account is below {MAX_ACCOUNT}")
            if not any(slot.active for slot in self.state.users.values()):
                return Error(ErrorCode.UNKNOWN_USER, detail="no user is enrolled")
            refused = self._face_gate()
            if refused is not None:
                return refused
            self._count_attempt()
        nonce = secrets.token_bytes(NONCE_SIZE)
        self._session = _Session(purpose, request.k, request.n, request.account, bytes(request.message), nonce, self.clock())
        return Session(nonce, request.n if purpose is not Purpose.ENROL else 0, round(self.session_ttl * 1000))

    def _current(self) -> _Session | Error:
        session = self._session
        if session is None:
            return Error(ErrorCode.NO_SESSION, detail="open a session first")
        if not 0 <= self.clock() - session.opened <= self.session_ttl:
            self._end_session()
            return Error(ErrorCode.NO_SESSION, detail="the session expired")
        return session

    def _end_session(self) -> None:
        if self._session is not None:
            self._session.wipe()
            self._session = None

    def _close_session(self, _: CloseSession) -> Message:
        self._end_session()
        return SessionClosed()

    def _load_record(self, request: LoadRecord) -> Message:
        session = self._current()
        if isinstance(session, Error):
            return session
        slot = self.state.users.get(request.user)
        refused = Error(ErrorCode.REJECTED, detail="record refused")
        if slot is None or not slot.active or request.generation != slot.active_generation:
            return refused
        if not tags_equal(hashlib.sha256(request.sealed).digest(), slot.active_digest):
            return refused
        try:
            opened = unseal(self.keys, self.state.device_id, self.lattice.lattice_id, request.user,
                            request.generation, request.sealed, self.lattice.tables.m)
        except OldFormatError as exc:
            # The user's own active blob (its digest matched), only older: say so, or an upgrade would lock
            # everyone out with no reason given. Its size is public: naming the format tells a thief nothing.
            return Error(ErrorCode.REJECTED, detail=clip_detail(str(exc)))
        except SealError:
            return refused
        session.loaded[request.user] = (request.generation, opened)
        return RecordLoaded(request.user)

    def _vector(self, blob: bytes) -> np.ndarray | Error:
        try:
            values = np.array(decode_vector(blob), dtype=np.int64)
        except MessageError as exc:
            return Error(ErrorCode.MALFORMED, detail=str(exc))
        q, m = self.lattice.tables.q, self.lattice.tables.m
        if values.shape != (m,) or np.any(np.abs(values) > q // 2):
            return Error(ErrorCode.MALFORMED, detail=f"a vector has {m} coordinates within +-{q // 2}")
        return values

    def _matches(self, c: np.ndarray, tag: bytes, user: str, generation: int, vector: np.ndarray, radius_sq: int,
                 counts: OpCounts) -> np.ndarray | None:
        lat = self.lattice
        s = match(lat.tables, lat.A, lat.rows, c, vector, radius_sq, counts)
        # The tag is computed whether or not the search found a point (on zeros then), so a miss and a
        # hit cost the same HMAC; the search itself is padded to its budgets.
        candidate = s if s is not None else np.zeros(lat.tables.n, dtype=np.int64)
        matched = tags_equal(secret_tag(self.keys, user, generation, candidate), tag)
        return s if s is not None and matched else None

    def _probe(self, request: Probe) -> Message:
        session = self._current()
        if isinstance(session, Error):
            return session
        if session.purpose is Purpose.ENROL:
            return Error(ErrorCode.UNEXPECTED, detail="an enrolment session takes no probes")
        if session.probes >= session.n:
            return Error(ErrorCode.LIMIT, detail="this session's probes are spent")
        session.probes += 1
        vector = self._vector(request.vector)
        if isinstance(vector, Error):
            return vector
        counts = OpCounts()
        state = self.state
        # The public mean face and vectors pulled toward it are probes anyone can make, and they sit near many
        # templates; no real face is that short, so a probe below the floor matches nothing (still counted).
        # Its shorter answer tells only that it was below the floor, which the host chose from public faces.
        loaded = session.loaded.items() if int(vector @ vector) >= state.min_probe_sq else ()
        for user, (generation, opened) in loaded:
            # Each purpose matches at the record's own radius for it (the wallet's is the tighter, so a face that
            # unlocks may still not sign); the lattice's operating points cap both again, as enrolment did.
            if session.purpose is Purpose.UNLOCK:
                radius_sq = min(opened.radius_sq, state.lattice_radius_sq)
            else:
                radius_sq = min(opened.wallet_radius_sq, state.wallet_radius_sq)
            s = self._matches(opened.c, opened.tag, user, generation, vector, radius_sq, counts)
            if s is not None:
                session.matches[user] += 1
                session.secrets[user] = s
        self._tally(counts)
        winner = next((u for u in session.loaded if session.matches[u] >= session.k), None)
        if winner is not None:
            return self._accept(session, winner)
        # No early reject: answering "no hope" after a non-matching probe would tell which single probe
        # matched, letting one counted attempt test n different faces. Only n probes end it.
        left = session.n - session.probes
        if left == 0:
            self._end_session()
            return VerdictMessage(Outcome.REJECT, "", _NO_KEY, _NO_SIGNATURE, 0)
        return VerdictMessage(Outcome.PENDING, "", _NO_KEY, _NO_SIGNATURE, left)

    def _accept(self, session: _Session, user: str) -> Message:
        state = self.state
        state.failures, state.locked_until_ms = 0, 0
        state.unlocks += 1
        self._refund()
        self._save()
        generation, _ = session.loaded[user]
        root = face_key(self.keys, user, generation, session.secrets[user])
        if session.purpose is Purpose.UNLOCK:
            key = unlock_key(root)
            signature = key.sign(unlock_message(session.nonce, user))
        else:
            key = wallet_key(root, session.account)
            signed = session.message if session.purpose is Purpose.WALLET_SIGN else wallet_proof_message(session.nonce)
            signature = key.sign(signed)
        public = public_key_bytes(key)
        del root, key
        self._end_session()
        return VerdictMessage(Outcome.ACCEPT, user, public, signature, 0)

    # --- enrolment ------------------------------------------------------------------------------

    def _enroll_face(self, request: EnrollFace) -> Message:
        session = self._current()
        if isinstance(session, Error):
            return session
        if session.purpose is not Purpose.ENROL:
            return Error(ErrorCode.UNEXPECTED, detail="enrolment needs an enrolment session")
        refused = self._require_admin()
        if refused is not None:
            return refused
        state = self.state
        slot = state.users.get(request.user)
        if request.generation == 0 or (slot is not None and request.generation <= slot.active_generation):
            return Error(ErrorCode.MALFORMED, detail="the generation must be at least 1 and grow with each enrolment")
        if not 0 < request.radius_sq <= state.lattice_radius_sq:
            return Error(ErrorCode.MALFORMED, detail="radius beyond the device lattice's")
        # The wallet radius is the tighter operating point: never above the record's unlock radius nor the wallet's.
        if not 0 < request.wallet_radius_sq <= min(request.radius_sq, state.wallet_radius_sq):
            return Error(ErrorCode.MALFORMED, detail="the wallet radius must be positive and at most the radius and the device lattice's wallet radius")
        if slot is None and len(state.users) >= MAX_USERS:
            return Error(ErrorCode.STORAGE_FULL, detail=f"at most {MAX_USERS} users")
        vector = self._vector(request.vector)
        if isinstance(vector, Error):
            return vector
        if request.radius_sq >= int(vector @ vector):
            # The public mean face (e = 0) is a probe anyone can make: no record may accept it.
            return Error(ErrorCode.MALFORMED, detail="a radius that reaches the public mean face")
        others = [u for u, s in state.users.items() if s.active and u != request.user]
        missing = [u for u in others if u not in session.loaded]
        if missing:
            return Error(ErrorCode.RECORDS_MISSING, detail=f"load the records of all {len(others)} other users first")
        if self._budget(self.clock()) < 1000:
            return self._budget_error()
        self._spend()
        self._save()
        counts = OpCounts()
        for user in others:
            generation, opened = session.loaded[user]
            # Either record unlocking the other's face is a collision: test at the larger radius.
            radius_sq = max(opened.radius_sq, request.radius_sq)
            if self._matches(opened.c, opened.tag, user, generation, vector, radius_sq, counts) is not None:
                self._tally(counts)
                return Error(ErrorCode.COLLISION, detail=clip_detail(f"this face unlocks the record of {user!r}"))
        self._tally(counts)
        lat = self.lattice
        q, n = lat.tables.q, lat.tables.n
        s = np.array([secrets.randbelow(q) for _ in range(n)], dtype=np.int64)
        c = (lat.A @ s + vector) % q
        tag = secret_tag(self.keys, request.user, request.generation, s)
        sealed = seal(self.keys, state.device_id, lat.lattice_id, request.user, request.generation, c, tag,
                      request.radius_sq, request.wallet_radius_sq)
        slot = state.users.setdefault(request.user, mcu_state.UserSlot())
        slot.pending_generation, slot.pending_digest = request.generation, hashlib.sha256(sealed).digest()
        self._save()
        public = public_key_bytes(unlock_key(face_key(self.keys, request.user, request.generation, s)))
        del s, c
        return FaceEnrolled(request.user, request.generation, sealed, public)

    def _commit_user(self, request: CommitUser) -> Message:
        # The digest proves the caller holds the sealed blob (the host that stored it): a bystander on the
        # link cannot activate a record the host never stored, which would lock its user out.
        slot = self.state.users.get(request.user)
        if (slot is None or not slot.pending or slot.pending_generation != request.generation
                or not tags_equal(request.digest, slot.pending_digest)):
            return Error(ErrorCode.UNKNOWN_USER, detail="no such pending enrolment")
        slot.active_generation, slot.active_digest = slot.pending_generation, slot.pending_digest
        slot.pending_generation, slot.pending_digest = 0, mcu_state.NO_DIGEST
        self._save()
        return UserCommitted(request.user, request.generation)

    def _abort_user(self, request: AbortUser) -> Message:
        slot = self.state.users.get(request.user)
        if slot is None or not slot.pending:
            return Error(ErrorCode.UNKNOWN_USER, detail="no such pending enrolment")
        slot.pending_generation, slot.pending_digest = 0, mcu_state.NO_DIGEST
        if not slot.active:
            del self.state.users[request.user]
        self._save()
        return UserAborted(request.user)

    def _remove_user(self, request: RemoveUser) -> Message:
        refused = self._require_admin()
        if refused is not None:
            return refused
        if request.user not in self.state.users:
            return Error(ErrorCode.UNKNOWN_USER, detail="no such user")
        del self.state.users[request.user]
        self._save()
        return Removed(request.user)

    def _list_users(self, request: ListUsers) -> Message:
        users = sorted(self.state.users.items())
        entries: list[tuple[str, int, int]] = []
        size = 0
        for name, slot in users[request.start :]:
            entry_size = 1 + len(name.encode("utf-8")) + 8
            if size + entry_size > MAX_LISTING:
                break
            entries.append((name, slot.active_generation if slot.active else 0, slot.pending_generation if slot.pending else 0))
            size += entry_size
        return UserList(len(users), encode_user_list(entries))

    # --- counting -------------------------------------------------------------------------------

    def _face_gate(self) -> Error | None:
        if self.passcode_required:
            return Error(ErrorCode.PASSCODE_REQUIRED, detail="enter the device passcode")
        remaining = self.lockout_remaining()
        if remaining > 0:
            return Error(ErrorCode.LOCKED_OUT, retry_after_ms=max(1, round(remaining * 1000)),
                         detail=f"{self.state.failures} failed attempts")
        if self._budget(self.clock()) < 1000:
            return self._budget_error()
        return None

    def _count_attempt(self) -> None:
        """Count one face attempt on flash, before the session exists."""
        state = self.state
        self._spend()
        state.failures += 1
        if state.failures >= self.max_failures:
            delay = min(self.backoff_base * 2 ** min(state.failures - self.max_failures, 32), self.backoff_max)
            state.locked_until_ms = round((self.clock() + delay) * 1000)
            state.lockouts += 1
        if state.failures >= self.passcode_after:
            state.passcode_required = True
        self._save()

    def _budget(self, now: float) -> int:
        """Daily face decisions left, in thousandths, after refilling for the time since the last update."""
        state = self.state
        capacity = self.daily_attempts * 1000
        now_ms = round(now * 1000)
        elapsed = now_ms - state.budget_updated_ms
        if elapsed < 0:  # a clock set backwards refills nothing
            state.budget_updated_ms = now_ms
            return state.budget_milli
        state.budget_milli = min(capacity, state.budget_milli + elapsed * self.daily_attempts // 86_400)
        state.budget_updated_ms = now_ms
        return state.budget_milli

    def _spend(self) -> None:
        self.state.budget_milli = self._budget(self.clock()) - 1000

    def _refund(self) -> None:
        self.state.budget_milli = min(self.daily_attempts * 1000, self._budget(self.clock()) + 1000)

    def _budget_error(self) -> Error:
        wait = (1000 - self.state.budget_milli) * 86_400 / (self.daily_attempts * 1000)
        return Error(ErrorCode.LOCKED_OUT, retry_after_ms=max(1, round(wait * 1000)),
                     detail=f"the daily budget of {self.daily_attempts} face decisions is spent")

    def _tally(self, counts: OpCounts) -> None:
        self.last_probe = counts
        for name in ("decodes", "nodes", "macs", "padded_nodes", "padded_macs"):
            setattr(self.counts, name, getattr(self.counts, name) + getattr(counts, name))

    def _save(self) -> None:
        mcu_state.save(self.state_dir, self.state)
