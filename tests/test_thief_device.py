"""The thief with the whole device (issue 16): the stolen store and a live microcontroller, every message
allowed (provisioning mode by the jumper, wrong passcodes, arbitrary vectors, replayed blobs, one user's
record under another name).

Two devices are made identical but for the owner's face (one chip's flash copied before enrolment: same
pepper, device id and lattice). The same thief script runs against each. What the microcontroller
returns must not depend on the face beyond the accept/reject bit (and, on an accept, the signature):
the transcripts match once the fresh nonces are masked. No face-derived value (c, the projected face e,
the secret s, the face key, a private key, the pepper) appears in anything returned, the stolen blobs do
not open without the pepper, and the thief gets no more accept/reject answers than counted attempts
before the passcode stops them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from mcu_bench import PASSCODE, RADIUS_SQ, Bench, Clock, face, genuine, provisioned, tables, vec

from latticelock.firmware_bridge import lattice_match as lm
from latticelock.firmware_bridge import messages as m
from latticelock.firmware_bridge.keys import unlock_key, verify_unlock, wallet_key
from latticelock.firmware_bridge.sealing import ChipKeys, SealError, face_key, unseal

OWNER_A, OWNER_B, KID, STRANGER = 1, 2, 3, 4
PURPOSES = [(m.Purpose.UNLOCK, b""), (m.Purpose.WALLET_SIGN, b"send everything"), (m.Purpose.WALLET_ADDRESS, b"")]


def twin_devices(root: Path) -> dict[str, Bench]:
    """Two devices whose chips differ only in the owner's enrolled face, each running (passcode entered)."""
    provisioned(root / "blank", Clock())
    devices = {}
    for name, owner in (("a", OWNER_A), ("b", OWNER_B)):
        shutil.copytree(root / "blank", root / name)
        bench = Bench(root / name, Clock())
        bench.start(provisioning=True)
        bench.admin()
        bench.enrol("owner", face(owner))
        bench.enrol("kid", face(KID))
        bench.start()
        bench.ask(m.Passcode(PASSCODE))  # the owner unlocked it before it was taken
        devices[name] = bench
    return devices


def probes(bench: Bench, rng: np.random.Generator) -> list[bytes]:
    """What a thief might feed the match: zeros (the mean face), a stranger's face, the stolen ciphertext
    read as a vector, random and extreme vectors."""
    blob = bench.records["owner"][1]
    as_vector = np.frombuffer(blob[12 : 12 + 64], dtype=">i2")
    return [vec(np.zeros(32, int)), vec(genuine(STRANGER, int(rng.integers(100)))), vec(as_vector),
            vec(rng.integers(-32768, 32768, 32)), vec([32767] * 32), vec(rng.integers(-300, 301, 32))]


def thief(bench: Bench, extra_probes: list[bytes] = ()) -> list[m.Message]:
    """The whole script; every answer the microcontroller gave, in order."""
    rng = np.random.default_rng(0)
    answers: list[m.Message] = []

    def ask(request: m.Message) -> m.Message:
        answers.append(bench.ask(request))
        return answers[-1]

    (owner_gen, owner_blob), (kid_gen, kid_blob) = bench.records["owner"], bench.records["kid"]
    for request in (m.Hello(), m.Status(), m.ListUsers(0)):
        ask(request)
    queue = list(extra_probes)
    for attempt in range(14):  # more attempts than the passcode allows; the thief waits out every back-off
        bench.clock.advance(bench.ask(m.Status()).lockout_remaining_ms / 1000)
        purpose, message = PURPOSES[attempt % len(PURPOSES)]
        if not isinstance(ask(m.OpenSession(purpose, 2, 3, 0, message)), m.Session):
            continue
        for request in (m.LoadRecord("owner", kid_gen, kid_blob), m.LoadRecord("kid", owner_gen, owner_blob),
                        m.LoadRecord("owner", owner_gen + 1, owner_blob), m.LoadRecord("owner", owner_gen, owner_blob),
                        m.LoadRecord("kid", kid_gen, kid_blob)):
            ask(request)
        batch = [queue.pop(0) for _ in range(min(3, len(queue)))] or probes(bench, rng)[attempt % 2 * 3 :][:3]
        for probe in batch:
            verdict = ask(m.Probe(probe))
            if not (isinstance(verdict, m.VerdictMessage) and verdict.outcome == m.Outcome.PENDING):
                break
        ask(m.CloseSession())
    # The jumper: provisioning mode, after a restart.
    bench.start(provisioning=True)
    for request in (m.Hello(), m.Status(), m.OpenSession(m.Purpose.ENROL, 0, 0),
                    m.EnrollFace("owner", 2, RADIUS_SQ, RADIUS_SQ, vec(np.zeros(32, int))), m.RemoveUser("owner"),
                    m.LatticeChunk(0, tables().to_bytes()[:1024]), m.SetPasscode("", "the thief's passcode"),
                    m.CommitUser("owner", 2, bytes(32)), m.AbortUser("owner"), m.OpenSession(m.Purpose.UNLOCK, 2, 3)):
        ask(request)
    for guess in ("000000", "123456", "password", "owner's birthday", "qwerty", "letmein", "111111"):
        bench.clock.advance(bench.ask(m.Status()).passcode_lockout_ms / 1000)
        ask(m.Passcode(guess))
    ask(m.OpenSession(m.Purpose.UNLOCK, 2, 3))
    ask(m.Status())
    return answers


def masked(answer: m.Message) -> m.Message:
    """The answer with its fresh randomness zeroed: session nonces."""
    if isinstance(answer, m.Session):
        return dataclasses.replace(answer, nonce=bytes(m.NONCE_SIZE))
    return answer


def decisions(answers: list[m.Message]) -> list[m.Outcome]:
    return [m.Outcome(a.outcome) for a in answers if isinstance(a, m.VerdictMessage) and a.outcome != m.Outcome.PENDING]


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bench]:
    return twin_devices(tmp_path_factory.mktemp("thief"))


@pytest.fixture(scope="module")
def transcripts(devices: dict[str, Bench]) -> dict[str, list[m.Message]]:
    return {name: thief(bench) for name, bench in devices.items()}


def test_the_transcripts_do_not_depend_on_the_face(transcripts: dict[str, list[m.Message]]) -> None:
    a, b = ([masked(x) for x in t] for t in transcripts.values())
    assert len(a) == len(b) > 100
    assert a == b


def test_at_most_the_counted_attempts_are_answered_before_the_passcode(devices, transcripts) -> None:
    for name, answers in transcripts.items():
        assert decisions(answers) == [m.Outcome.REJECT] * 10  # passcode_after: 5 free, 5 after waits
        sessions = [a for a in answers if isinstance(a, m.Session)]
        assert len(sessions) == 10
        report = answers[-1]
        assert report.passcode_required and report.failures == 10 and report.users == 2
        assert devices[name].mcu.counts.decodes <= 10 * 3 * 2
        refused = [a for a in answers if isinstance(a, m.Error) and a.code == m.ErrorCode.PASSCODE_REQUIRED]
        assert len(refused) == 4 + 2  # the four attempts past the tenth, two after the jumper's restart


def test_the_jumper_gives_no_administrator(transcripts) -> None:
    answers = transcripts["a"]
    start = next(i for i, a in enumerate(answers) if isinstance(a, m.Version) and a.provisioning)
    codes = [a.code for a in answers[start + 2 : start + 10]]
    assert codes == [m.ErrorCode.NOT_AUTHORISED, m.ErrorCode.NO_SESSION, m.ErrorCode.NOT_AUTHORISED,
                     m.ErrorCode.NOT_AUTHORISED, m.ErrorCode.WRONG_PASSCODE, m.ErrorCode.UNKNOWN_USER,
                     m.ErrorCode.UNKNOWN_USER, m.ErrorCode.PASSCODE_REQUIRED]
    assert not any(isinstance(a, m.PasscodeOk) for a in answers[start:])


def face_secrets(bench: Bench, owner: int) -> dict[str, bytes]:
    """Every face-derived value of the owner, computed with the chip's secrets (which the thief lacks)."""
    state, lattice = bench.mcu.state, bench.mcu.lattice
    keys = ChipKeys.from_pepper(state.pepper)
    gen, blob = bench.records["owner"]
    opened = unseal(keys, state.device_id, lattice.lattice_id, "owner", gen, blob, 32)
    s = lm.match(lattice.tables, lattice.A, lattice.rows, opened.c, face(owner), RADIUS_SQ, lm.OpCounts())
    assert s is not None
    root = face_key(keys, "owner", gen, s)
    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    e = lm.centred(face(owner), 65537)
    values = {"pepper": state.pepper, "seal key": keys.seal, "tag key": keys.tag, "face key root": keys.face,
              "tag": opened.tag, "face key": root, "unlock private key": unlock_key(root).private_bytes(*raw),
              "wallet private key": wallet_key(root, 0).private_bytes(*raw)}
    for dtype in ("<u4", ">u4", "<i4", ">i4"):
        values[f"c {dtype}"] = np.asarray(opened.c).astype(dtype).tobytes()
        values[f"s {dtype}"] = np.asarray(s).astype(dtype).tobytes()
    for dtype in (">i2", "<i2", "<i4", ">i4", "<i8"):
        values[f"e {dtype}"] = e.astype(dtype).tobytes()
        values[f"c centred {dtype}"] = lm.centred(opened.c, 65537).astype(dtype).tobytes()
    return values


def test_nothing_returned_contains_a_face_derived_value(devices, transcripts) -> None:
    returned = b"".join(a.encode_payload() for a in transcripts["a"])
    for what, value in face_secrets(devices["a"], OWNER_A).items():
        # Any 8-byte window of it (so a prefix or a part would be caught too).
        windows = {value[i : i + 8] for i in range(0, len(value) - 7, 4)}
        assert not any(w in returned for w in windows), what


def test_the_stolen_blobs_do_not_open_without_the_pepper(devices) -> None:
    bench = devices["a"]
    state, lattice_id = bench.mcu.state, bench.mcu.lattice.lattice_id
    gen, blob = bench.records["owner"]
    secrets = face_secrets(bench, OWNER_A)
    guesses = [bytes(32), state.device_id * 2, lattice_id, bytes(range(32)), blob[:32]]
    for pepper in guesses:
        with pytest.raises(SealError):
            unseal(ChipKeys.from_pepper(pepper), state.device_id, lattice_id, "owner", gen, blob, 32)
    windows = {v[i : i + 8] for v in secrets.values() for i in range(0, len(v) - 7, 4)}
    assert not any(w in blob for w in windows)
    assert len(blob) == len(bench.records["kid"][1])  # every blob has the same size


def test_a_face_the_thief_happens_to_hold_is_the_only_difference(tmp_path: Path) -> None:
    """With the owner of device a's face among the thief's probes (a photo, say), device a accepts and signs,
    device b rejects; every answer before that decision is identical."""
    devices = twin_devices(tmp_path)
    photo = [vec(genuine(OWNER_A, 50)), vec(genuine(OWNER_A, 51)), vec(genuine(OWNER_A, 52))]
    runs = {name: thief(bench, extra_probes=photo) for name, bench in devices.items()}
    a, b = ([masked(x) for x in t] for t in runs.values())
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert a[:first] == b[:first]
    accept, reject = runs["a"][first], runs["b"][first]
    # Device b answers "pending" where a accepts: the chip never rejects before the n-th probe.
    assert (accept.outcome, accept.user, reject.outcome) == (m.Outcome.ACCEPT, "owner", m.Outcome.PENDING)
    assert reject.signature == bytes(64) and reject.public_key == bytes(32)
    nonce = next(x.nonce for x in reversed(runs["a"][:first]) if isinstance(x, m.Session))
    assert verify_unlock(accept.public_key, nonce, "owner", accept.signature)  # the first attempt is an unlock
