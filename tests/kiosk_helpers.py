"""A kiosk on fast stand-ins for the kiosk tests: FakePipeline frames, and a simulated chip with a cheap passcode KDF.

Sources, by index (the order of the page's drop-downs):
0 alice's enrolment frames, 1 alice's probe frames, 2 bob's probe frames, 3 bob's enrolment frames,
4 alice's other frames (a second enrolment of alice's face), 5 frames with no face.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

from device_fakes import RECIPE_OPTIONS, FakePipeline, write_frames
from latticelock.device.enrol import EnrolConfig
from latticelock.device.kiosk.chip import Chip
from latticelock.device.kiosk.station import Kiosk, SourceChoice
from latticelock.device.microcontroller import parse_sim_url
from latticelock.device.sources import SourceOptions
from latticelock.device.store import FlashStore

PASSCODE = "246810"
ALICE_ENROL, ALICE_PROBE, BOB_PROBE, BOB_ENROL, ALICE_AGAIN, NOBODY = range(6)
FRAMES = {
    "alice: enrolment frames": (1, range(5), True),
    "alice: probe frames": (1, [50, 51, 52], True),
    "bob: probe frames": (2, [60, 61, 62, 63, 64], True),
    "bob: enrolment frames": (2, range(10, 15), True),
    "alice: other frames": (1, range(30, 35), True),
    "nobody: empty room": (3, range(3), False),
}


def fast_sim(**options):
    """A Chip opener: the simulated chip of a `sim://` URL, with a cheap passcode KDF (and `options`)."""

    @contextlib.contextmanager
    def opener(url: str) -> Iterator:
        from latticelock.firmware_bridge.simulator import embedded

        state_dir, provisioning = parse_sim_url(url)
        with embedded(state_dir, provisioning=provisioning, passcode_iterations=1000, **options) as (client, _):
            client.hello()
            yield client

    return opener


def sources(folder: Path) -> list[SourceChoice]:
    return [SourceChoice(label, f"dir://{write_frames(folder / f'src{i}', person, seeds, face)}")
            for i, (label, (person, seeds, face)) in enumerate(FRAMES.items())]


def make_kiosk(tmp: Path, *, rate: float | None = None, chip: Chip | None = None, **sim_options) -> Kiosk:
    """A kiosk over a fresh store, the fake pipeline and a simulated chip; `rate` paces the replays (frames/s)."""
    return Kiosk(
        FlashStore(tmp / "store"), chip or Chip(f"sim://{tmp / 'mcu'}?provisioning=1", fast_sim(**sim_options)),
        sources(tmp / "frames"), FakePipeline, recipe_options=RECIPE_OPTIONS,
        source_options=SourceOptions(fps=rate), enrol_config=EnrolConfig(frames=5),
        store_note=f"Temporary store in {tmp}",
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client, passcode: str = PASSCODE):
    """Sign in through the pages (setting the passcode first on a new chip); returns the dashboard response."""
    page = client.get("/signin")
    if "Set the device passcode" in page.text:
        return client.post("/passcode", data={"csrf": csrf_of(page.text), "passcode": passcode, "again": passcode})
    return client.post("/signin", data={"csrf": csrf_of(page.text), "passcode": passcode})


def post(client, path: str, data: dict, form_page: str = "/"):
    """POST a form the way the page does: with the CSRF token of the session's current page."""
    return client.post(path, data={"csrf": csrf_of(client.get(form_page).text), **data})


def wait_for_job(client, timeout: float = 60.0) -> dict:
    """The enrolment's final snapshot, polling its status like the page's script."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = client.get("/enrol/status").json()
        if snapshot["state"] != "running":
            return snapshot
        time.sleep(0.05)
    raise AssertionError("the enrolment did not finish in time")
