"""The simulated microcontroller's own flash: public keys, its pepper and its counters.

One file, `mcu-state.bin`, in the simulator's state directory (standing for the MCU's internal,
read-protected flash, not the device's):

    magic "LLMC" | format u8 | device_id 16 | pepper 32 | failures u32 | lockouts u32 | unlocks u32
    | locked_until_ms u64 | user count u16 | per user: name length u8, name, public key 32 | crc32 u32

Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a power cut leaves
the old state or the new one. A corrupt or foreign file is refused rather than replaced: silently
starting afresh would both reset the failure counter and lose the pepper every record depends on.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from latticelock.firmware_bridge.errors import StateError
from latticelock.firmware_bridge.messages import DEVICE_ID_SIZE, MAX_USER, PUBLIC_KEY_SIZE

STATE_FILE = "mcu-state.bin"
MAGIC = b"LLMC"
FORMAT_VERSION = 1
PEPPER_SIZE = 32
_FIXED = struct.Struct(f">4sB{DEVICE_ID_SIZE}s{PEPPER_SIZE}sIIIQH")
_CRC = struct.Struct(">I")


@dataclass
class McuState:
    """Everything the microcontroller keeps across power cycles."""

    device_id: bytes
    pepper: bytes = field(repr=False)
    failures: int = 0
    lockouts: int = 0
    unlocks: int = 0
    locked_until_ms: int = 0
    users: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> McuState:
        """A new microcontroller: random device id and pepper from the OS CSPRNG, no users."""
        return cls(device_id=secrets.token_bytes(DEVICE_ID_SIZE), pepper=secrets.token_bytes(PEPPER_SIZE))

    def to_bytes(self) -> bytes:
        """The state file's bytes (layout in the module docstring), users sorted by name."""
        out = bytearray(
            _FIXED.pack(
                MAGIC,
                FORMAT_VERSION,
                self.device_id,
                self.pepper,
                self.failures,
                self.lockouts,
                self.unlocks,
                self.locked_until_ms,
                len(self.users),
            )
        )
        for name, key in sorted(self.users.items()):
            raw = name.encode("utf-8")
            out += bytes([len(raw)]) + raw + key
        return bytes(out + _CRC.pack(zlib.crc32(out)))

    @classmethod
    def from_bytes(cls, data: bytes) -> McuState:
        """Parse a state file; StateError for a foreign, other-version, corrupt or malformed one."""
        if len(data) < _FIXED.size + _CRC.size or data[:4] != MAGIC:
            raise StateError("microcontroller state is not a LatticeLock MCU state file")
        if data[4] != FORMAT_VERSION:
            raise StateError(f"microcontroller state has format version {data[4]}; this build reads {FORMAT_VERSION}")
        body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
        if zlib.crc32(body) != crc:
            raise StateError("microcontroller state is corrupt (CRC-32 mismatch)")
        _, _, device_id, pepper, failures, lockouts, unlocks, locked_until_ms, count = _FIXED.unpack(
            body[: _FIXED.size]
        )
        users: dict[str, bytes] = {}
        pos = _FIXED.size
        try:
            for _ in range(count):
                size = body[pos]
                if not 1 <= size <= MAX_USER or pos + 1 + size + PUBLIC_KEY_SIZE > len(body):
                    raise StateError("microcontroller state has a malformed user entry")
                name = body[pos + 1 : pos + 1 + size].decode("utf-8")
                if name in users:
                    raise StateError(f"microcontroller state lists user {name!r} twice")
                users[name] = bytes(body[pos + 1 + size : pos + 1 + size + PUBLIC_KEY_SIZE])
                pos += 1 + size + PUBLIC_KEY_SIZE
        except (IndexError, UnicodeDecodeError):
            raise StateError("microcontroller state has a malformed user entry") from None
        if pos != len(body):
            raise StateError("microcontroller state has trailing bytes")
        return cls(device_id, pepper, failures, lockouts, unlocks, locked_until_ms, users)


def load_or_create(state_dir: Path) -> McuState:
    """The state kept in `state_dir`, creating (and saving) a fresh one when there is none yet.

    Temporary files a writer left when the power went are removed: the rename never happened, so
    the state file still holds the previous, complete state.
    """
    path = Path(state_dir) / STATE_FILE
    for leftover in Path(state_dir).glob(f".{STATE_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        state = McuState.fresh()
        save(state_dir, state)
        return state
    except OSError as exc:
        raise StateError(f"cannot read microcontroller state {path}: {exc}") from exc
    return McuState.from_bytes(data)


def save(state_dir: Path, state: McuState) -> None:
    """Replace the state file atomically and durably."""
    directory = Path(state_dir)
    path = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{secrets.token_hex(4)}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # os.write may write less than asked (disk nearly full); a short file would pass the
            # rename and then be refused at the next start, so finish it or fail here.
            view = memoryview(state.to_bytes())
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
        raise StateError(f"cannot write microcontroller state {path}: {exc}") from exc
