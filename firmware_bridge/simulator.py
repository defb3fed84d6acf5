"""A microcontroller in Python that speaks the protocol over a port, for tests, demos and the CLI.

Where it listens (`url_or_port`):
- `"pty"`: a new pseudo-terminal; clients open the slave path given by `address` (like a USB serial
  adapter appearing as /dev/ttyACM0);
- `"listen://HOST:PORT"`: a TCP listener (PORT 0 picks a free one); clients open `address`, a
  `socket://HOST:PORT` URL; one client at a time, the next one is accepted when it disconnects;
- any other pyserial URL or device path (`loop://`, `/dev/ttyUSB0`, `socket://` to a listener
  elsewhere), or an already open port object.

Frames that cannot be read are answered with an ERROR whose sequence number is 0 (BAD_FRAME or, when
the version is foreign, UNSUPPORTED_VERSION with the request's sequence number) and the serving
goes on; the logic behind the answers is `mcu.Mcu`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import serial

from latticelock.firmware_bridge.client import McuClient
from latticelock.firmware_bridge.errors import FrameError, LinkError, LinkTimeoutError, VersionError
from latticelock.firmware_bridge.link import POLL_INTERVAL, WRITE_TIMEOUT, Link, open_link
from latticelock.firmware_bridge.mcu import Mcu
from latticelock.firmware_bridge.messages import Error, ErrorCode, clip_detail
from latticelock.firmware_bridge.ports import open_pty, socket_port


class McuSimulator:
    """Serves `Mcu` over a port; `start()` runs it in a thread, `serve_forever()` in the caller's."""

    def __init__(self, url_or_port: str | Any, state_dir: Path, **mcu_options: Any) -> None:
        self.mcu = Mcu(Path(state_dir), **mcu_options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._port: Any = None
        if not isinstance(url_or_port, str):
            self._port, self.address = url_or_port, "<port object>"
        elif url_or_port == "pty":
            self._port, self.address = open_pty(POLL_INTERVAL)
        elif url_or_port.startswith("listen://"):
            self._listener, self.address = _listen(url_or_port)
        else:
            try:
                self._port = serial.serial_for_url(url_or_port, timeout=POLL_INTERVAL, write_timeout=WRITE_TIMEOUT)
            except (serial.SerialException, ValueError, OSError) as exc:
                raise LinkError(f"cannot open {url_or_port!r}: {exc}") from exc
            self.address = url_or_port

    def serve_forever(self, stop_event: threading.Event | None = None) -> None:
        """Answer requests until `stop()` is called or `stop_event` is set."""
        stop = stop_event or self._stop
        try:
            while not (stop.is_set() or self._stop.is_set()):
                if self._listener is None:
                    self._serve(Link(self._port, POLL_INTERVAL), stop)
                    continue
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                link = Link(socket_port(conn), POLL_INTERVAL)
                try:
                    self._serve(link, stop)
                finally:
                    link.close()
        finally:
            self._close()

    def start(self) -> McuSimulator:
        """Serve in a daemon thread; returns self so `sim = McuSimulator(...).start()` reads well."""
        self._thread = threading.Thread(target=self.serve_forever, name="mcu-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait up to `timeout` seconds for the serving thread; closes the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self._close()

    def __enter__(self) -> McuSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, link: Link, stop: threading.Event) -> None:
        """One connection: returns when it closes (socket) or the simulator stops."""
        while not (stop.is_set() or self._stop.is_set()):
            try:
                try:
                    frame = link.receive_frame(POLL_INTERVAL)
                except LinkTimeoutError:
                    continue
                except VersionError as exc:
                    link.send(Error(ErrorCode.UNSUPPORTED_VERSION, detail=clip_detail(str(exc))), exc.seq)
                    continue
                except FrameError as exc:
                    link.send(Error(ErrorCode.BAD_FRAME, detail=clip_detail(str(exc))), 0)
                    continue
                link.send_frame(self.mcu.handle_frame(frame))
            except LinkError:
                if self._listener is None:
                    raise
                return

    def _close(self) -> None:
        for resource in (self._port, self._listener):
            if resource is not None:
                try:
                    resource.close()
                except OSError:
                    pass
        self._port = self._listener = None


def _listen(url: str) -> tuple[socket.socket, str]:
    parts = urlsplit(url)
    try:
        port = parts.port  # raises on a port outside 0..65535 or one that is not a number
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise LinkError(f"expected listen://HOST:PORT with PORT in 0..65535, got {url!r}")
    try:
        listener = socket.create_server((parts.hostname, port))
    except OSError as exc:
        raise LinkError(f"cannot listen on {parts.hostname}:{port}: {exc}") from exc
    listener.settimeout(POLL_INTERVAL)
    host, port = listener.getsockname()[:2]
    return listener, f"socket://{host}:{port}"


def run_simulator(
    url: str,
    state_dir: Path,
    provisioning: bool = False,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    **mcu_options: Any,
) -> None:
    """Run a simulated microcontroller until `stop_event` is set (or KeyboardInterrupt).

    `on_ready(address)` is called once listening, with what a client passes to `open_link`
    (the pty's slave path, or `socket://HOST:PORT` for `listen://`).
    """
    simulator = McuSimulator(url, state_dir, provisioning=provisioning, **mcu_options)
    if on_ready is not None:
        on_ready(simulator.address)
    simulator.serve_forever(stop_event)


@contextlib.contextmanager
def embedded(state_dir: Path, provisioning: bool = False, timeout: float = 5.0, **mcu_options: Any) -> Iterator[tuple[McuClient, McuSimulator]]:
    """A simulated microcontroller in this process, reached over a real socket: (client, simulator).

    What `sim://STATE_DIR` on the command line and the kiosk's default use, so the whole protocol runs
    even without a board."""
    simulator = McuSimulator("listen://127.0.0.1:0", state_dir, provisioning=provisioning, **mcu_options).start()
    try:
        client = McuClient(open_link(simulator.address, timeout=timeout))
    except BaseException:
        simulator.stop()
        raise
    try:
        yield client, simulator
    finally:
        client.close()
        simulator.stop()
