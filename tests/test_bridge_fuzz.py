"""Fuzzing the frame decoder and message parser: 10^5 random and mutated frames, one stream.

Every input must end as a Frame, a decoded message or a BridgeError (anything else is a crash), and
after each burst of junk an intact frame must still come out (the resynchronisation). The seeded
generator makes a failure reproducible; the time bound turns a hang into a failure.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter

from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.errors import BridgeError, FrameError
from latticelock.firmware_bridge.framing import (
    CRC,
    HEADER,
    MAX_ENCODED,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    cobs_encode,
    encode_frame,
)

CASES = 100_000
SEED = 20261122
HANG_BOUND_S = 300.0

SAMPLES: list[m.Message] = [
    m.Hello(),
    m.Status(),
    m.SetPasscode("", "correct horse"),
    m.Passcode("correct horse"),
    m.LatticeChunk(0, bytes(range(256)) * 4),
    m.LatticeCommit("l2fe-facenet-m64", bytes(range(32)), 10_928_974, 5_533_436, 6_325_225, 41_483, bytes(32)),
    m.OpenSession(m.Purpose.WALLET_SIGN, 2, 3, 7, b"pay 3 to carol"),
    m.LoadRecord("alice", 2, bytes(range(256)) + bytes(69)),
    m.Probe(m.encode_vector(range(-32, 32))),
    m.EnrollFace("bøb", 1, 10_928_974, 2_732_243, m.encode_vector(range(64))),
    m.CommitUser("bøb", 1, bytes(range(32))),
    m.AbortUser("bøb"),
    m.RemoveUser("carol"),
    m.ListUsers(0),
    m.CloseSession(),
    m.Version(2, "latticelock-sim/2", bytes(16), True, 1200, True, bytes(range(32))),
    m.StatusReport(False, 3, 2, 5, 1000, True, 1, 60_000, 97, 1, 7, False),
    m.PasscodeOk(True),
    m.ChunkOk(1024),
    m.Session(bytes(range(32)), 3, 15_000),
    m.VerdictMessage(m.Outcome.ACCEPT, "alice", bytes(range(32)), bytes(range(64)), 0),
    m.FaceEnrolled("alice", 2, bytes(range(256)) + bytes(69), bytes(range(32))),
    m.UserList(2, m.encode_user_list([("alice", 2, 0), ("bøb", 0, 1)])),
    m.Error(m.ErrorCode.LOCKED_OUT, 30_000, "5 failed attempts"),
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out.insert(pos, rng.randrange(256))
        elif op == 2 and out:
            del out[pos % len(out)]
        elif op == 3:
            del out[pos:]
        else:
            out[pos:pos] = out[rng.randrange(len(out) + 1) :][: rng.randint(1, 64)]
    return bytes(out)


def _framed(msg_type: int, seq: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """A correctly framed body (valid COBS and CRC) around an arbitrary payload: reaches the parser."""
    body = HEADER.pack(version, msg_type, seq) + payload
    return b"\x00" + cobs_encode(body + CRC.pack(zlib.crc32(body))) + b"\x00"


def _case(rng: random.Random, kind: int) -> bytes:
    sample = SAMPLES[rng.randrange(len(SAMPLES))]
    payload = sample.encode_payload()
    if kind == 0:  # random bytes, sometimes a long run with no delimiter
        if rng.random() < 0.01:
            return bytes(rng.randrange(1, 256) for _ in range(MAX_ENCODED + rng.randrange(200)))
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # a real frame damaged on the wire
        return _mutate(rng, encode_frame(Frame(sample.TYPE, rng.randrange(0x10000), payload)))
    if kind == 2:  # a damaged payload behind valid framing: exercises the message decoders
        return _framed(sample.TYPE, rng.randrange(0x10000), _mutate(rng, payload)[:1200])
    # any type, random payload, occasionally a foreign version
    version = PROTOCOL_VERSION if rng.random() < 0.95 else rng.randrange(256)
    return _framed(rng.randrange(256), rng.randrange(0x10000), rng.randbytes(rng.randrange(0, 80)), version)


def test_fuzz_decoder_and_parser() -> None:
    rng = random.Random(SEED)
    decoder = FrameDecoder()
    outcomes: Counter[str] = Counter()
    sentinel = Frame(m.Status.TYPE, 0xBEEF, b"")
    start = time.monotonic()

    def drain() -> Frame | None:
        last = None
        while True:
            try:
                frame = decoder.next_frame()
            except FrameError as exc:
                outcomes[type(exc).__name__] += 1
                continue
            if frame is None:
                return last
            last = frame
            try:
                m.decode_message(frame.type, frame.payload)
                outcomes["message"] += 1
            except BridgeError as exc:
                outcomes[type(exc).__name__] += 1

    for case in range(CASES):
        data = _case(rng, case % 4)
        # Split the bytes at a random point, as a serial read would.
        cut = rng.randrange(len(data) + 1)
        decoder.feed(data[:cut])
        drain()
        decoder.feed(data[cut:])
        drain()
        if case % 10 == 9:
            decoder.feed(encode_frame(sentinel))
            assert drain() == sentinel, f"no resynchronisation after case {case}"
        assert time.monotonic() - start < HANG_BOUND_S, f"fuzzing stalled at case {case}"

    elapsed = time.monotonic() - start
    print(f"\nfuzz: {CASES} cases in {elapsed:.1f} s: {dict(outcomes)}")
    # Every family of outcome was reached, so the generator exercises all the paths it claims to.
    for name in ("message", "ChecksumError", "FrameError", "OversizeFrameError", "VersionError",
                 "MessageError", "UnknownMessageError"):
        assert outcomes[name] > 0, name
