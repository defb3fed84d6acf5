"""The kiosk in a real browser: headless Debian chromium, driven by Playwright, doing what an operator does.

Pages are found by role and visible text, and Playwright waits for them (no sleeps). Playwright's own
browser download is not used: it launches the system's /usr/bin/chromium (`.ci/run` installs it) with
a fresh temporary profile and the flags this closed network needs. Without chromium the tests skip
with a reason, except in CI, where they must run.

Screenshots of the main screens go to $LATTICELOCK_KIOSK_SCREENSHOTS when set (the README's come
from `docs/kiosk`), else to the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kiosk_helpers import PASSCODE, make_kiosk

CHROMIUM = Path(os.environ.get("LATTICELOCK_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags chromium keeps dialling Google on a network that refuses it.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic", "--no-first-run"]
VIEWPORT = {"width": 1000, "height": 720}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI installs it in .ci/run")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def shots(tmp_path):
    """`shots(page, name)`: a full-page screenshot, as a 128-colour PNG (a third of the size, no visible loss).
    Camera frames on the page are masked: the datasets' faces are not copied into the repository."""
    from PIL import Image

    folder = Path(os.environ.get("LATTICELOCK_KIOSK_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str) -> None:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, mask=[page.locator("img")], mask_color="#7f8c8d")
        Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)

    return shoot


def set_passcode(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name="Set the device passcode")).to_be_visible()
    page.get_by_label("New passcode").fill(PASSCODE)
    page.get_by_label("The same again").fill(PASSCODE)
    page.get_by_role("button", name="Set passcode and sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def start_enrolment(page, name: str, source: str) -> None:
    page.get_by_role("link", name="Enrol a user").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Source").select_option(label=source)
    page.get_by_role("button", name="Start enrolment").click()


def run_test_unlock(page, source: str, decision: str, timeout: float = 60_000) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Test unlock").click()
    page.get_by_label("Source").select_option(label=source)
    page.get_by_role("button", name="Run a test unlock").click()
    expect(page.get_by_role("heading", name=decision)).to_be_visible(timeout=timeout)



def refuses_a_forged_delete(page, url: str) -> None:
    """The browser's own cookie without the page's CSRF token: refused, and nothing is deleted."""
    answer = page.request.post(f"{url}users/delete", form={"name": "anyone"})
    assert answer.status == 403 and "CSRF token is missing or out of date" in answer.text()


@contextlib.contextmanager
def kiosk_command(*args: str):
    """`latticelock kiosk serve ARGS` in a child process; yields (its URL, the lines it printed)."""
    env = dict(os.environ, LATTICELOCK_DEVICE_CONFIG="", PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-m", "latticelock.tools", "kiosk", "serve", "--port", "0", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    printed: list[str] = []

    def read() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the kiosk stopped before serving:\n" + "".join(printed)
            printed.append(line)
            found = re.search(r"LatticeLock kiosk at (http://\S+/)", line)
            if found:
                yield found.group(1), printed
                break
        else:
            raise AssertionError("the kiosk did not start in time:\n" + "".join(printed))
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)


@contextlib.contextmanager
def serving(app):
    """The app on uvicorn in a thread of this process, on a free loopback port; yields its URL."""
    import uvicorn

    from latticelock.tools.kiosk_commands import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.integration
def test_operator_journey_on_real_faces(browser, datasets, shots, tmp_path):
    """Sign in, enrol anpage from a faces94 replay (real MTCNN + FaceNet), see him listed, unlock with his other
    images (accepted) and with another person (rejected), delete him, and meet the CSRF refusal."""
    from playwright.sync_api import expect

    faces = datasets / "faces94_subset"
    enrol_with = f"dir://{faces / 'anpage'}?count=5"
    his_others = f"dir://{faces / 'anpage'}?start=5"
    someone_else = f"dir://{faces / '9336923'}?count=5"
    with kiosk_command("--threads", "2", "--input-rate", "3", "--source", enrol_with, "--source", his_others,
                       "--source", someone_else) as (url, printed):
        scratch = re.search(r"Temporary store and simulated microcontroller in (\S+):", "".join(printed)).group(1)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(url)
        shots(page, "1-set-passcode")
        set_passcode(page, url)

        start_enrolment(page, "anpage", enrol_with)
        expect(page.get_by_role("heading", name="Enrolling anpage")).to_be_visible()
        expect(page.locator("#good")).not_to_have_text("0", timeout=60_000)
        # The live preview has painted a frame (the face box and the verdict drawn on it).
        page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
        expect(page.locator("#verdict")).to_have_text(re.compile(r"good|face too small|blurred|not facing|no face|two faces|sealing"))
        shots(page, "2-enrolling")
        expect(page.get_by_role("heading", name="Enrolled anpage")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("hardened: sealed to the microcontroller")).to_be_visible()
        expect(page.get_by_text(re.compile(r"^([0-9a-f]{4}:){7}[0-9a-f]{4}$"))).to_be_visible()
        shots(page, "3-enrolled")

        page.get_by_role("link", name="Back to the dashboard").click()
        row = page.get_by_role("row").filter(has_text="anpage")
        expect(row).to_contain_text("l2fe-device-far1e-4")
        expect(row).to_contain_text("hardened")
        shots(page, "4-dashboard")

        run_test_unlock(page, his_others, "Accepted: anpage")
        shots(page, "5-unlock-accepted")
        run_test_unlock(page, someone_else, "Rejected")
        shots(page, "6-unlock-rejected")

        page.get_by_role("link", name="Dashboard").click()
        expect(page.get_by_role("row").filter(has_text="accept")).to_have_count(1)
        page.get_by_role("link", name="Delete anpage").click()
        expect(page.get_by_role("heading", name="Delete anpage?")).to_be_visible()
        shots(page, "7-delete")
        page.get_by_role("button", name="Delete anpage").click()
        expect(page.get_by_role("status")).to_contain_text("deleted 'anpage' from the microcontroller and the store")
        expect(page.get_by_text("No users enrolled yet.")).to_be_visible()

        refuses_a_forged_delete(page, url)
        context.close()
    assert not Path(scratch).exists(), "the temporary store outlived the kiosk"


def test_bad_input_two_tabs_and_a_double_click(browser, tmp_path):
    """Fake pipeline, real browser: a name with a path separator, a second tab enrolling while the first does,
    a double-clicked delete, and a forged request."""
    from playwright.sync_api import expect

    from latticelock.device.kiosk.app import create_app

    kiosk = make_kiosk(tmp_path, rate=3.0)
    try:
        with serving(create_app(kiosk)) as url:
            context = browser.new_context(viewport=VIEWPORT)
            tab = context.new_page()
            set_passcode(tab, url)

            start_enrolment(tab, "../alice", "alice: enrolment frames")
            expect(tab.get_by_role("alert")).to_have_text("a user name may not contain '/' or '\\'")

            start_enrolment(tab, "alice", "alice: enrolment frames")
            expect(tab.get_by_role("heading", name="Enrolling alice")).to_be_visible()
            other_tab = context.new_page()
            other_tab.goto(url)
            start_enrolment(other_tab, "bob", "bob: enrolment frames")
            expect(other_tab.get_by_role("alert")).to_contain_text("the device is busy with the enrolment of 'alice'")
            expect(tab.get_by_role("heading", name="Enrolled alice")).to_be_visible(timeout=30_000)

            tab.get_by_role("link", name="Back to the dashboard").click()
            tab.get_by_role("link", name="Delete alice").click()
            tab.get_by_role("button", name="Delete alice").dblclick()
            expect(tab.get_by_text("No users enrolled yet.")).to_be_visible()
            expect(tab.get_by_role("status")).to_contain_text("deleted 'alice'")
            expect(tab.get_by_role("alert")).to_have_count(0)
            assert kiosk.store.users() == []

            refuses_a_forged_delete(tab, url)
            context.close()
    finally:
        kiosk.chip.close()
