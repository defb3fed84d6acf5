"""The kiosk's parts without a browser: sessions and the sign-in limit, the preview, and `latticelock kiosk serve`."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from device_fakes import FakePipeline, frame_image, write_frames
from latticelock.device.enrol import FrameCheck
from latticelock.device.kiosk.operators import MAX_SESSIONS, Sessions, SignInLimiter, csrf_ok
from latticelock.device.kiosk.preview import GOOD, MIN_HEIGHT, annotate
from latticelock.device.sources import Frame
from latticelock.tools.cli import main


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_rotate_on_sign_in_and_expire_with_the_admin_window():
    clock = Clock()
    sessions = Sessions(clock=clock)
    visitor = sessions.new()
    visitor.flash("ok", "hello")
    assert sessions.get(visitor.id) is visitor and not visitor.signed_in
    operator = sessions.sign_in(visitor)
    assert operator.id != visitor.id and operator.csrf != visitor.csrf and operator.signed_in
    assert sessions.get(visitor.id) is None and operator.take_messages() == [("ok", "hello")]
    clock.now += 299
    assert sessions.get(operator.id) is operator and sessions.window_left(operator) == pytest.approx(1)
    clock.now += 2
    assert sessions.get(operator.id) is None
    assert sessions.get("") is None and sessions.get(None) is None


def test_anonymous_sessions_are_bounded_and_cannot_push_out_an_operator():
    sessions = Sessions(clock=Clock())
    operator = sessions.sign_in(sessions.new())
    first = sessions.new()
    for _ in range(MAX_SESSIONS):
        sessions.new()
    assert sessions.get(first.id) is None and sessions.get(operator.id) is operator


def test_csrf_tokens_compare_whole():
    session = Sessions().new()
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, session.csrf[:-1]) and not csrf_ok(session, "") and not csrf_ok(None, session.csrf)


def test_the_sign_in_limit_counts_failures_in_a_sliding_window():
    clock = Clock()
    limiter = SignInLimiter(failures=3, period=60.0, clock=clock)
    for _ in range(3):
        assert limiter.wait() == 0
        limiter.failed()
        clock.now += 10
    assert limiter.wait() == pytest.approx(30)
    clock.now += 30
    assert limiter.wait() == 0


def test_the_preview_boxes_the_face_and_stays_a_jpeg_in_memory():
    pipeline = FakePipeline()
    image = frame_image(1, 7)
    faces = pipeline.faces(image)
    jpeg = annotate(FrameCheck(Frame(image, 0.0, 0, "f.png"), faces, "good", 1, 5))
    assert jpeg[:3] == b"\xff\xd8\xff"
    shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape[0] == MIN_HEIGHT
    scale = MIN_HEIGHT / image.shape[0]
    x1, y1 = (int(v * scale) for v in faces[0].box[:2])
    # The box's corner is drawn in the "good" colour (JPEG blurs it a little).
    assert np.abs(shown[y1 + 1, x1 + 1].astype(int) - GOOD).max() < 60


def test_the_default_sources_are_two_replays_per_faces94_person(tmp_path, monkeypatch):
    from latticelock.tools.kiosk_commands import replay_sources

    for person in ("bob", "alice"):
        write_frames(tmp_path / "faces94_subset" / person, 1, range(2))
    monkeypatch.setenv("LATTICELOCK_DATASETS", str(tmp_path))
    choices = replay_sources()
    alice = tmp_path / "faces94_subset" / "alice"
    assert [c.uri for c in choices[:2]] == [f"dir://{alice}?count=5", f"dir://{alice}?start=5"]
    assert [c.label for c in choices] == ["alice: first 5 images (replay)", "alice: the other images (replay)",
                                          "bob: first 5 images (replay)", "bob: the other images (replay)"]


@pytest.fixture()
def serve_env(monkeypatch, tmp_path):
    """`kiosk serve` with the fake pipeline, and uvicorn replaced by a look at the app it would serve."""
    import uvicorn
    from starlette.testclient import TestClient

    import latticelock.models.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "FacePipeline", lambda threads=None: FakePipeline())
    served = {}

    def run(server, sockets):
        served["address"] = sockets[0].getsockname()
        client = TestClient(server.config.app, base_url="http://127.0.0.1")
        served["signin"] = client.get("/signin").text
        served["other_host"] = client.get("/signin", headers={"host": "rebound.example"}).status_code

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return served


def test_serve_defaults_to_loopback_and_a_temporary_store_it_removes(serve_env, tmp_path, capsys):
    source = f"dir://{write_frames(tmp_path / 'cam', 1, range(3))}"
    assert main(["kiosk", "serve", "--port", "0", "--source", source]) == 0
    out = capsys.readouterr()
    url = re.search(r"LatticeLock kiosk at (http://127\.0\.0\.1:(\d+)/)", out.out)
    assert url and int(url.group(2)) == serve_env["address"][1] and "WARNING" not in out.err
    scratch = re.search(r"Temporary store and simulated microcontroller in (\S+):", out.out).group(1)
    assert "Set the device passcode" in serve_env["signin"] and f"Temporary store and simulated microcontroller in {scratch}" in serve_env["signin"]
    assert serve_env["other_host"] == 400
    assert not Path(scratch).exists()


def test_serve_off_loopback_warns_loudly(serve_env, tmp_path, capsys):
    source = f"dir://{write_frames(tmp_path / 'cam', 1, range(3))}"
    assert main(["kiosk", "serve", "--host", "0.0.0.0", "--port", "0", "--source", source,
                 "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr()
    assert "WARNING: the kiosk listens on 0.0.0.0, reachable from the network" in out.err
    assert serve_env["other_host"] == 200 and (tmp_path / "store" / "STORE").exists()


def test_serve_errors_are_one_line(serve_env, tmp_path, monkeypatch, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    source = f"dir://{write_frames(tmp_path / 'cam', 1, range(3))}"
    plain = tmp_path / "plain"
    from latticelock.device.store import FlashStore

    FlashStore(plain, mode="plain")
    monkeypatch.setenv("LATTICELOCK_DATASETS", str(tmp_path / "no-datasets"))
    cases = [
        (["--port", str(busy.getsockname()[1]), "--source", source], "cannot listen on 127.0.0.1"),
        (["--port", "70000", "--source", source], "--port must be in 0..65535"),
        (["--port", "0"], "no frame source: give --source URI"),
        (["--port", "0", "--source", source, "--store", str(plain)], "the kiosk provisions hardened stores only"),
        (["--port", "0", "--source", source, "--frames", "0"], "invalid enrolment settings"),
    ]
    for argv, message in cases:
        assert main(["kiosk", "serve", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    busy.close()
    assert "address" not in serve_env
