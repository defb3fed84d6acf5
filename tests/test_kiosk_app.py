"""The kiosk's pages through Starlette's test client: the flows, the security rules and bad input (fake pipeline)."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from starlette.testclient import TestClient

from kiosk_helpers import (
    ALICE_AGAIN,
    ALICE_ENROL,
    ALICE_PROBE,
    BOB_ENROL,
    BOB_PROBE,
    NOBODY,
    PASSCODE,
    csrf_of,
    make_kiosk,
    post,
    sign_in,
    wait_for_job,
)
from latticelock.device.kiosk.app import CONTENT_SECURITY_POLICY, create_app


def client_for(kiosk) -> TestClient:
    return TestClient(create_app(kiosk, allowed_hosts=["testserver"]))


@pytest.fixture()
def kiosk(tmp_path):
    kiosk = make_kiosk(tmp_path)
    yield kiosk
    kiosk.chip.close()


@pytest.fixture()
def operator(kiosk):
    """A signed-in operator's browser."""
    client = client_for(kiosk)
    assert "Dashboard" in sign_in(client).text
    return client


def enrol(client, name: str, source: int, replace: bool = False) -> dict:
    data = {"name": name, "source": str(source)} | ({"replace": "yes"} if replace else {})
    response = post(client, "/enrol", data, form_page="/enrol")
    assert response.status_code == 200 and response.url.path == "/enrol/job", response.text
    return wait_for_job(client)


def chip_users(kiosk) -> list:
    with kiosk.chip.use() as client:
        return [(u.name, u.active_generation, u.pending_generation) for u in client.list_users()]


def test_first_run_sets_the_passcode_then_signs_in(kiosk):
    client = client_for(kiosk)
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/signin"
    page = client.get("/signin")
    assert "Set the device passcode" in page.text and "Temporary store in" in page.text
    token = csrf_of(page.text)
    for new, again, message in [("246810", "246811", "the two passcodes differ"), ("12345", "12345", "6 to 64 characters")]:
        refused = client.post("/passcode", data={"csrf": token, "passcode": new, "again": again})
        assert refused.status_code == 400 and message in refused.text
    anonymous = client.cookies["latticelock_kiosk"]
    done = client.post("/passcode", data={"csrf": token, "passcode": PASSCODE, "again": PASSCODE})
    assert "Dashboard" in done.text and "device passcode set on the microcontroller" in done.text
    assert "No users enrolled yet" in done.text and "provisioning (the kiosk jumper is on)" in done.text
    # Signing in issues a new session id: one planted before sign-in is worth nothing after it.
    assert client.cookies["latticelock_kiosk"] != anonymous
    stale = TestClient(client.app, cookies={"latticelock_kiosk": anonymous})
    assert stale.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_a_damaged_store_is_one_line_on_a_page(operator, kiosk):
    (kiosk.store.path / "STORE").write_bytes(b"LATTICELOCK-STORE\n" + bytes(40))
    page = operator.get("/")
    assert page.status_code == 500 and "store header is corrupt" in page.text and "Traceback" not in page.text
    assert "The kiosk cannot do this now" in page.text


def test_cookie_headers_and_host_rules(kiosk):
    client = client_for(kiosk)
    page = client.get("/signin")
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    for path in ("/signin", "/static/kiosk.js", "/nowhere"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "<script>" not in page.text and "onclick" not in page.text
    # A page reached under another host name (DNS rebinding) is refused.
    assert client.get("/signin", headers={"host": "attacker.example"}).status_code == 400


def test_state_changing_requests_need_the_csrf_token(operator, kiosk):
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"
    token = csrf_of(operator.get("/").text)
    attempts = [("/users/delete", {"name": "alice"}), ("/enrol", {"name": "eve", "source": "3"}),
                ("/unlock", {"source": "1"}), ("/signout", {}), ("/signin", {"passcode": PASSCODE})]
    for path, data in attempts:
        for forged in ({}, {"csrf": "not-the-token"}, {"csrf": token[:-1]}):
            refused = operator.post(path, data=data | forged)
            assert refused.status_code == 403 and "CSRF token is missing or out of date" in refused.text, path
    dashboard = operator.get("/")
    assert "Dashboard" in dashboard.text and ">alice<" in dashboard.text and "Recent attempts" in dashboard.text
    assert [name for name, *_ in chip_users(kiosk)] == ["alice"]


def test_enrol_list_unlock_delete_and_nothing_secret_reaches_the_page(operator, kiosk):
    pages = []
    form = operator.get("/enrol")
    assert "alice: enrolment frames" in form.text
    pages.append(form.text)
    job = enrol(operator, "alice", ALICE_ENROL)
    assert job["state"] == "done" and job["good"] == 5
    outcome = job["outcome"]
    assert outcome["user"] == "alice" and outcome["generation"] == 1 and outcome["hardened"]
    assert outcome["record_bytes"] > 100 and len(outcome["key_fingerprint"]) == 39
    result = operator.get("/enrol/job")
    assert "Enrolled alice" in result.text and "sealed to the microcontroller" in result.text
    pages += [str(job), result.text]
    # The enrolment is over: no preview is left to stream.
    assert operator.get("/enrol/preview.mjpg").status_code == 204
    dashboard = operator.get("/")
    pages.append(dashboard.text)
    assert ">alice<" in dashboard.text and ">hardened<" in dashboard.text and ">l2fe-device-far1e-4<" in dashboard.text
    accepted = post(operator, "/unlock", {"source": str(ALICE_PROBE)}, "/unlock")
    assert "Accepted: alice" in accepted.text and "signature verifies" in accepted.text
    rejected = post(operator, "/unlock", {"source": str(BOB_PROBE)}, "/unlock")
    assert "Rejected" in rejected.text and "Accepted" not in rejected.text
    dashboard = operator.get("/")
    assert ">accept<" in dashboard.text and ">reject<" in dashboard.text
    pages += [accepted.text, rejected.text, dashboard.text]

    record = kiosk.store.get("alice").record_bytes
    for page in pages:
        for secret in (record.hex(), base64.b64encode(record).decode(), record[-64:].hex()):
            assert secret not in page

    confirm = operator.get("/users/delete", params={"name": "alice"})
    assert "Delete alice?" in confirm.text
    deleted = operator.post("/users/delete", data={"csrf": csrf_of(confirm.text), "name": "alice"})
    assert "deleted &#39;alice&#39; from the microcontroller and the store" in deleted.text
    assert "No users enrolled yet" in deleted.text and chip_users(kiosk) == []


@pytest.fixture()
def enrolling(tmp_path):
    """(kiosk, first, second): two signed-in operators; the first is enrolling alice from a replay paced at 4 frames/s."""
    kiosk = make_kiosk(tmp_path, rate=4.0)
    first, second = client_for(kiosk), client_for(kiosk)
    sign_in(first)
    sign_in(second)
    assert post(first, "/enrol", {"name": "alice", "source": str(ALICE_ENROL)}, "/enrol").url.path == "/enrol/job"
    yield kiosk, first, second
    kiosk.chip.close()


def test_the_preview_streams_jpeg_frames_only_to_the_operator_who_enrols(enrolling, tmp_path):
    kiosk, operator, other = enrolling
    assert other.get("/enrol/status").status_code == 404
    assert other.get("/enrol/preview.mjpg").status_code == 204
    with operator.stream("GET", "/enrol/preview.mjpg") as stream:
        assert stream.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        body = b"".join(stream.iter_bytes())
    assert body.count(b"--frame\r\nContent-Type: image/jpeg\r\n") >= 3 and body.endswith(b"\r\n--frame\r\n")
    assert wait_for_job(operator)["state"] == "done"
    from test_device_store import biometric_traces

    # The frames were shown, never written: no image or embedding in the store, no JPEG on either flash.
    assert biometric_traces(tmp_path / "store") == {}
    written = [p for p in (tmp_path / "store").rglob("*")] + [p for p in (tmp_path / "mcu").rglob("*")]
    assert not [p for p in written if p.is_file() and looks_like_jpeg(p.read_bytes())]


def looks_like_jpeg(data: bytes) -> bool:
    """A JPEG's start-of-image marker followed by an APPn or quantisation-table segment, and its end marker
    later on: the bare three bytes FF D8 FF turn up by chance in the chip's integer lattice tables."""
    start = data.find(b"\xff\xd8\xff")
    while start != -1:
        if data[start + 3 : start + 4] in (b"\xe0", b"\xe1", b"\xdb") and b"\xff\xd9" in data[start + 4 :]:
            return True
        start = data.find(b"\xff\xd8\xff", start + 1)
    return False


BAD_NAMES = [
    ("", "give the user's name"),
    ("a/b", "may not contain '/' or '\\'"),
    ("..\\evil", "may not contain '/' or '\\'"),
    ("bell\x07", "has control characters or surrounding spaces"),
    (" alice", "has control characters or surrounding spaces"),
    ("x" * 65, "at most 64 are allowed"),
    ("é" * 33, "66 bytes of UTF-8; at most 64"),
]


def test_bad_names_are_refused_in_words(operator, kiosk):
    for name, message in BAD_NAMES:
        response = post(operator, "/enrol", {"name": name, "source": str(ALICE_ENROL)}, "/enrol")
        assert response.status_code == 400 and message.replace("'", "&#39;") in response.text, name
    assert kiosk.job is None and kiosk.store.users() == []


def test_a_bad_source_choice_and_oversized_forms_are_refused(operator, kiosk):
    for source in ("99", "-1", "x"):
        response = post(operator, "/enrol", {"name": "alice", "source": source}, "/enrol")
        assert response.status_code == 400 and "choose one of the listed sources" in response.text
    token = csrf_of(operator.get("/enrol").text)
    huge = operator.post("/enrol", data={"csrf": token, "name": "a" * 100_000, "source": "0"})
    assert huge.status_code == 400 and kiosk.job is None


def test_too_few_good_frames_and_a_collision_store_nothing(operator, kiosk):
    empty = enrol(operator, "ghost", NOBODY)
    assert empty["state"] == "failed" and "only 0 good frames of the 5 needed" in empty["error"]
    assert "nothing was stored" in empty["error"]
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"
    clash = enrol(operator, "mallory", ALICE_AGAIN)
    assert clash["state"] == "failed" and "'alice'" in clash["error"] and "nothing stored" in clash["error"]
    failed_page = operator.get("/enrol/job").text
    assert "Enrolment of mallory failed" in failed_page
    assert [u.name for u in kiosk.store.users()] == ["alice"] and chip_users(kiosk) == [("alice", 1, 0)]


def test_re_enrolment_needs_replace_and_bumps_the_generation(operator, kiosk):
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"
    form = operator.get("/enrol", params={"name": "alice"})
    assert "Re-enrol alice" in form.text and 'value="alice"' in form.text
    refused = post(operator, "/enrol", {"name": "alice", "source": str(ALICE_AGAIN)}, "/enrol")
    assert refused.status_code == 400 and "is already enrolled: tick" in refused.text
    again = enrol(operator, "alice", ALICE_AGAIN, replace=True)
    assert again["state"] == "done" and again["outcome"]["generation"] == 2
    assert chip_users(kiosk) == [("alice", 2, 0)] and kiosk.store.get("alice").generation == 2


def test_two_tabs_enrolling_at_once_get_one_clear_refusal(enrolling):
    kiosk, first, second = enrolling
    busy = post(second, "/enrol", {"name": "bob", "source": str(BOB_ENROL)}, "/enrol")
    assert busy.status_code == 409 and "the device is busy with the enrolment of &#39;alice&#39;" in busy.text
    unlock = post(second, "/unlock", {"source": str(ALICE_PROBE)}, "/unlock")
    assert unlock.status_code == 409 and "busy" in unlock.text
    assert wait_for_job(first)["state"] == "done"
    assert post(second, "/enrol", {"name": "bob", "source": str(BOB_ENROL)}, "/enrol").url.path == "/enrol/job"
    assert wait_for_job(second)["state"] == "done"
    assert sorted(u.name for u in kiosk.store.users()) == ["alice", "bob"]


def test_a_double_clicked_delete_removes_once_and_says_so(operator, kiosk):
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"
    token = csrf_of(operator.get("/users/delete", params={"name": "alice"}).text)
    answers = []

    def click() -> None:
        answers.append(operator.post("/users/delete", data={"csrf": token, "name": "alice"}, follow_redirects=False))

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    assert [a.status_code for a in answers] == [303, 303]
    page = operator.get("/").text
    assert "deleted &#39;alice&#39;" in page and "&#39;alice&#39; is not enrolled (already deleted?)" in page
    assert kiosk.store.users() == [] and chip_users(kiosk) == []


class Unplugged:
    """A camera that delivers two frames, then stops answering (a source that fails mid-enrolment)."""

    def __init__(self, source) -> None:
        self.source = source

    def __enter__(self) -> "Unplugged":
        return self

    def __exit__(self, *exc) -> None:
        self.source.close()

    def __iter__(self):
        from latticelock.device.errors import SourceError

        for index, frame in enumerate(self.source):
            if index == 2:
                raise SourceError(f"{self.source.uri}: no frame within 5.0 s (camera unplugged)")
            yield frame


def test_a_source_that_fails_mid_enrolment_stores_nothing(operator, kiosk, monkeypatch):
    real_open = kiosk._open
    monkeypatch.setattr(kiosk, "_open", lambda choice: Unplugged(real_open(choice)))
    job = enrol(operator, "alice", ALICE_ENROL)
    assert job["state"] == "failed" and job["good"] == 2
    assert "camera unplugged" in job["error"] and "nothing was stored" in job["error"]
    assert kiosk.store.users() == [] and chip_users(kiosk) == []
    monkeypatch.setattr(kiosk, "_open", real_open)
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"


def test_sign_in_is_rate_limited_and_shows_the_chips_delays(kiosk):
    from latticelock.device.kiosk.operators import SignInLimiter

    setter = client_for(kiosk)
    sign_in(setter)
    client = client_for(kiosk)
    token = csrf_of(client.get("/signin").text)
    for _ in range(4):
        wrong = client.post("/signin", data={"csrf": token, "passcode": "not-it"})
        assert wrong.status_code == 400 and "wrong passcode" in wrong.text and "next guess" not in wrong.text
    fifth = client.post("/signin", data={"csrf": token, "passcode": "not-it"})
    assert "wrong passcode; the microcontroller takes the next guess in 60 s" in fifth.text
    limited = client.post("/signin", data={"csrf": token, "passcode": PASSCODE})
    assert "too many wrong passcodes at this kiosk: wait" in limited.text
    # Past the kiosk's own limit, the chip's delay still holds, even for the right passcode.
    kiosk.limiter = SignInLimiter(failures=100)
    chip_delay = client.post("/signin", data={"csrf": token, "passcode": PASSCODE})
    assert "the microcontroller refuses this for another" in chip_delay.text and "5 wrong passcodes" in chip_delay.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_unlock_refusals_are_shown_in_words(operator, kiosk):
    assert enrol(operator, "alice", ALICE_ENROL)["state"] == "done"
    for _ in range(5):
        assert "Rejected" in post(operator, "/unlock", {"source": str(BOB_PROBE)}, "/unlock").text
    locked = post(operator, "/unlock", {"source": str(ALICE_PROBE)}, "/unlock")
    assert locked.status_code == 400 and "the microcontroller refuses this for another 30 s (5 failed attempts)" in locked.text
    assert "faces refused for another" in operator.get("/").text
    # The chip restarts (here: the kiosk reconnects to it): it wants the passcode before faces again.
    kiosk.chip.close()
    restarted = post(operator, "/unlock", {"source": str(ALICE_PROBE)}, "/unlock")
    assert restarted.url.path == "/signin" and "wants the device passcode before it takes faces" in restarted.text


def test_the_administrator_window_closing_sends_the_operator_to_sign_in(tmp_path):
    kiosk = make_kiosk(tmp_path, admin_window=1)
    try:
        client = client_for(kiosk)
        sign_in(client)
        time.sleep(1.5)
        page = client.get("/")
        assert page.url.path == "/signin" and "administrator window has closed: sign in again" in page.text
        assert "Dashboard" in sign_in(client).text
        time.sleep(1.5)
        refused = post(client, "/enrol", {"name": "alice", "source": str(ALICE_ENROL)}, "/enrol")
        assert refused.url.path == "/signin" and "administrator window has closed" in refused.text and kiosk.job is None
    finally:
        kiosk.chip.close()


def test_the_chip_disappearing_and_coming_back(tmp_path):
    from latticelock.device.kiosk.chip import Chip
    from latticelock.firmware_bridge.simulator import McuSimulator

    def start(port: int = 0) -> McuSimulator:
        return McuSimulator(f"listen://127.0.0.1:{port}", tmp_path / "mcu", provisioning=True,
                            passcode_iterations=1000).start()

    sim = start()
    port = int(sim.address.rsplit(":", 1)[1])
    kiosk = make_kiosk(tmp_path, rate=4.0, chip=Chip(f"socket://127.0.0.1:{port}"))
    try:
        client = client_for(kiosk)
        sign_in(client)
        assert enrol(client, "alice", ALICE_ENROL)["state"] == "done"
        # Unplugged in the middle of an enrolment: the page says what happened, nothing is half-written.
        assert post(client, "/enrol", {"name": "bob", "source": str(BOB_ENROL)}, "/enrol").url.path == "/enrol/job"
        sim.stop()
        job = wait_for_job(client)
        assert job["state"] == "failed" and "The enrolment was interrupted" in job["error"]
        dashboard = client.get("/")
        assert "does not answer" in dashboard.text and ">alice<" in dashboard.text
        refused = post(client, "/enrol", {"name": "bob", "source": str(BOB_ENROL)}, "/enrol")
        assert refused.status_code == 400 and "does not answer" in refused.text
        # Plugged back in (it restarted): sign in again, and store and chip agree.
        sim = start(port)
        assert client.get("/").url.path == "/signin"
        assert "Dashboard" in sign_in(client).text
        assert [u.name for u in kiosk.store.users()] == ["alice"] and chip_users(kiosk) == [("alice", 1, 0)]
        assert enrol(client, "bob", BOB_ENROL)["state"] == "done"
    finally:
        kiosk.chip.close()
        sim.stop()
