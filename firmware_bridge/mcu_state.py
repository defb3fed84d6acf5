"""The simulated microcontroller's own flash: its pepper, counters, passcode verifier, users, lattice.

Two files in the simulator's state directory (standing for two regions of the MCU's internal,
read-protected flash, not the device's):

`mcu-state.bin`, rewritten on every counted event (small, so a write is one flash page or two):

    magic "LLMC" | format u8 (3) | device_id 16 | pepper 32
    | failures u32 | locked_until_ms u64 | lockouts u32 | unlocks u32 | passcode_required u8
    | passcode: iterations u32 (0 = none set) | salt 16 | verifier 32 | failures u32 | locked_until_ms u64
    | daily budget: tokens_milli u32 | updated_ms u64 | policy: k u8 | n u8
    | lattice: parameter-set name (u8 length) | seed 32 | radius_sq u64 | wallet_radius_sq u64
                | min_probe_sq u64 (0 = no floor) | tables SHA-256 32 (all zero = none)
    | user count u16 | per user: name (u8 length) | active generation u32 | active digest 32
                                | pending generation u32 | pending digest 32
    | crc32 u32

`mcu-lattice.bin.<digest>`: the device lattice's decoding tables (`lattice_match.LatticeTables`, about 41 KB
at m = 64), written once at provisioning and checked against the SHA-256 above at every start.

Per user the chip keeps no biometric data: a generation and the SHA-256 of the sealed helper data the
host must present (active: in use; pending: written by an enrolment that has not been committed).
Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a power cut leaves the
old state or the new one. A corrupt or foreign file is refused rather than replaced: starting afresh
would reset the failure counters and lose the pepper every sealed record depends on.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from latticelock.firmware_bridge.errors import StateError
from latticelock.firmware_bridge.messages import DEVICE_ID_SIZE, DIGEST_SIZE, MAX_SET_NAME, MAX_USER, SEED_SIZE

STATE_FILE = "mcu-state.bin"
LATTICE_FILE = "mcu-lattice.bin"
MAGIC = b"LLMC"
FORMAT_VERSION = 3
PEPPER_SIZE = 32
NO_DIGEST = bytes(DIGEST_SIZE)
_HEAD = struct.Struct(f">4sB{DEVICE_ID_SIZE}s{PEPPER_SIZE}s")
_COUNTERS = struct.Struct(">IQIIB")
_PASSCODE = struct.Struct(">I16s32sIQ")
_BUDGET = struct.Struct(">IQBB")
_LATTICE_TAIL = struct.Struct(f">{SEED_SIZE}sQQQ{DIGEST_SIZE}s")
_USER_TAIL = struct.Struct(f">I{DIGEST_SIZE}sI{DIGEST_SIZE}s")
_CRC = struct.Struct(">I")
_OLD_FORMATS = {
    1: "a format-1 chip holds no sealed records",
    2: "a format-2 chip has no probe floor, so it would match the public mean face and faces pulled toward it",
}


@dataclass
class UserSlot:
    active_generation: int = 0
    active_digest: bytes = NO_DIGEST
    pending_generation: int = 0
    pending_digest: bytes = NO_DIGEST

    @property
    def active(self) -> bool:
        return self.active_digest != NO_DIGEST

    @property
    def pending(self) -> bool:
        return self.pending_digest != NO_DIGEST


@dataclass
class McuState:
    """Everything the microcontroller keeps across power cycles."""

    device_id: bytes
    pepper: bytes = field(repr=False)
    failures: int = 0
    locked_until_ms: int = 0
    lockouts: int = 0
    unlocks: int = 0
    passcode_required: bool = False
    passcode_iterations: int = 0
    passcode_salt: bytes = bytes(16)
    passcode_verifier: bytes = field(default=bytes(32), repr=False)
    passcode_failures: int = 0
    passcode_locked_until_ms: int = 0
    budget_milli: int = 0
    budget_updated_ms: int = 0
    policy_k: int = 2
    policy_n: int = 3
    parameter_set: str = ""
    lattice_seed: bytes = bytes(SEED_SIZE)
    lattice_radius_sq: int = 0
    wallet_radius_sq: int = 0
    min_probe_sq: int = 0
    lattice_digest: bytes = NO_DIGEST
    users: dict[str, UserSlot] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> McuState:
        """A new microcontroller: random device id and pepper from the OS CSPRNG, nothing else."""
        return cls(device_id=secrets.token_bytes(DEVICE_ID_SIZE), pepper=secrets.token_bytes(PEPPER_SIZE))

    @property
    def passcode_set(self) -> bool:
        return self.passcode_iterations > 0

    @property
    def lattice_ready(self) -> bool:
        return self.lattice_digest != NO_DIGEST

    def to_bytes(self) -> bytes:
        out = bytearray(_HEAD.pack(MAGIC, FORMAT_VERSION, self.device_id, self.pepper))
        out += _COUNTERS.pack(self.failures, self.locked_until_ms, self.lockouts, self.unlocks, int(self.passcode_required))
        out += _PASSCODE.pack(self.passcode_iterations, self.passcode_salt, self.passcode_verifier,
                              self.passcode_failures, self.passcode_locked_until_ms)
        out += _BUDGET.pack(self.budget_milli, self.budget_updated_ms, self.policy_k, self.policy_n)
        name = self.parameter_set.encode("ascii")
        out += bytes([len(name)]) + name + _LATTICE_TAIL.pack(self.lattice_seed, self.lattice_radius_sq, self.wallet_radius_sq,
                                                              self.min_probe_sq, self.lattice_digest)
        out += struct.pack(">H", len(self.users))
        for user, slot in sorted(self.users.items()):
            raw = user.encode("utf-8")
            out += bytes([len(raw)]) + raw + _USER_TAIL.pack(slot.active_generation, slot.active_digest,
                                                             slot.pending_generation, slot.pending_digest)
        return bytes(out + _CRC.pack(zlib.crc32(out)))

    @classmethod
    def from_bytes(cls, data: bytes) -> McuState:
        """Parse a state file; StateError for a foreign, other-version, corrupt or malformed one."""
        if len(data) < _HEAD.size + _CRC.size or data[:4] != MAGIC:
            raise StateError("microcontroller state is not a LatticeLock MCU state file")
        if data[4] != FORMAT_VERSION:
            old = _OLD_FORMATS.get(data[4])
            advice = f" ({old}: provision it afresh, see PROTOCOL.md section 10)" if old else ""
            raise StateError(f"microcontroller state has format version {data[4]}; this build reads {FORMAT_VERSION}{advice}")
        body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
        if zlib.crc32(body) != crc:
            raise StateError("microcontroller state is corrupt (CRC-32 mismatch)")
        try:
            return _parse(body)
        except (struct.error, IndexError, UnicodeDecodeError, ValueError):
            raise StateError("microcontroller state is malformed") from None


def _parse(body: bytes) -> McuState:
    pos = 0

    def take(layout: struct.Struct) -> tuple:
        nonlocal pos
        values = layout.unpack_from(body, pos)
        pos += layout.size
        return values

    def name(limit: int, encoding: str) -> str:
        nonlocal pos
        size = body[pos]
        if size > limit or pos + 1 + size > len(body):
            raise ValueError("name too long")
        text = body[pos + 1 : pos + 1 + size].decode(encoding)
        pos += 1 + size
        return text

    _, _, device_id, pepper = take(_HEAD)
    failures, locked_until, lockouts, unlocks, required = take(_COUNTERS)
    iterations, salt, verifier, pc_failures, pc_locked = take(_PASSCODE)
    budget, budget_ms, k, n = take(_BUDGET)
    parameter_set = name(MAX_SET_NAME, "ascii")
    seed, radius_sq, wallet_radius_sq, min_probe_sq, digest = take(_LATTICE_TAIL)
    (count,) = take(struct.Struct(">H"))
    users: dict[str, UserSlot] = {}
    for _ in range(count):
        user = name(MAX_USER, "utf-8")
        if not user or user in users:
            raise ValueError("bad user entry")
        users[user] = UserSlot(*take(_USER_TAIL))
    if pos != len(body):
        raise ValueError("trailing bytes")
    return McuState(device_id, pepper, failures, locked_until, lockouts, unlocks, bool(required), iterations, salt,
                    verifier, pc_failures, pc_locked, budget, budget_ms, k, n, parameter_set, seed, radius_sq, wallet_radius_sq,
                    min_probe_sq, digest, users)


def load_or_create(state_dir: Path) -> McuState:
    """The state kept in `state_dir`, creating (and saving) a fresh one when there is none yet.

    Temporary files a writer left when the power went are removed: the rename never happened, so
    the state file still holds the previous, complete state.
    """
    directory = Path(state_dir)
    if directory.exists() and not directory.is_dir():
        raise StateError(f"microcontroller state directory {directory} is not a directory")
    path = directory / STATE_FILE
    for leftover in directory.glob(".mcu-*.tmp"):
        leftover.unlink(missing_ok=True)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        state = McuState.fresh()
        save(directory, state)
        return state
    except OSError as exc:
        raise StateError(f"cannot read microcontroller state {path}: {exc.strerror or exc}") from None
    return McuState.from_bytes(data)


def save(state_dir: Path, state: McuState) -> None:
    """Replace the state file atomically and durably."""
    write_region(Path(state_dir), STATE_FILE, state.to_bytes())


def _tables_name(digest: bytes) -> str:
    # Named by their digest: new tables never overwrite the ones the current state points to, so a
    # power cut between writing them and committing the state leaves a chip that still starts.
    return f"{LATTICE_FILE}.{digest.hex()[:16]}"


def load_tables(state_dir: Path, digest: bytes) -> bytes:
    try:
        return (Path(state_dir) / _tables_name(digest)).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read the device lattice: {exc.strerror or exc}") from None


def save_tables(state_dir: Path, data: bytes, digest: bytes) -> None:
    write_region(Path(state_dir), _tables_name(digest), data)


def drop_other_tables(state_dir: Path, digest: bytes) -> None:
    """Remove tables the state no longer points to (after the state naming the new ones is on flash)."""
    keep = _tables_name(digest)
    for path in Path(state_dir).glob(f"{LATTICE_FILE}.*"):
        if path.name != keep:
            path.unlink(missing_ok=True)


_CLAIMS: dict[str, int] = {}


def claim(state_dir: Path) -> None:
    """Hold the state directory for this process (flock), so two simulators cannot share one chip's flash
    and lose each other's counts. A restart within this process keeps the claim."""
    import fcntl

    key = str(Path(state_dir).resolve())
    if key in _CLAIMS:
        return
    if Path(state_dir).exists() and not Path(state_dir).is_dir():
        raise StateError(f"microcontroller state directory {state_dir} is not a directory")
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(Path(state_dir) / "LOCK", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateError(f"cannot lock microcontroller state {state_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError(f"microcontroller state {state_dir} is in use by another simulator process") from None
    _CLAIMS[key] = fd


def write_region(directory: Path, name: str, data: bytes) -> None:
    """Write one flash region atomically: temporary file, fsync, rename, fsync of the directory."""
    path = directory / name
    tmp = directory / f".mcu-{secrets.token_hex(4)}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # os.write may write less than asked (disk nearly full); a short file would pass the
            # rename and then be refused at the next start, so finish it or fail here.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateError(f"cannot write microcontroller flash {path}: {exc.strerror or exc}") from None
