"""A link to the microcontroller: framed, typed messages over any pyserial port.

The link owns the port and the frame decoder (transport and framing); message handling lives in
the client and in the simulator, which only ever see whole frames and typed messages. The port is
read with a short poll interval so that deadlines are honoured without busy waiting.

Recovery rules: a bad frame (COBS, CRC, length, version) is reported and discarded, and reading
goes on with the next frame; an answer whose sequence number is not the one awaited (a late answer
to a request that timed out, say) is dropped; a timeout leaves the link usable.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import serial

from latticelock.firmware_bridge.errors import FrameError, LinkError, LinkTimeoutError, ProtocolError
from latticelock.firmware_bridge.framing import Frame, FrameDecoder, encode_frame
from latticelock.firmware_bridge.messages import Error, Message, decode_message

DEFAULT_TIMEOUT = 2.0
POLL_INTERVAL = 0.05
DEFAULT_BAUDRATE = 115200
# pyserial blocks for ever in write() by default; a stalled port must surface as a LinkError instead.
WRITE_TIMEOUT = 5.0


class Link:
    """Framed messages over an open port (anything with pyserial's read/write/in_waiting/timeout/close)."""

    def __init__(self, port: Any, timeout: float = DEFAULT_TIMEOUT, poll_interval: float = POLL_INTERVAL) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.port = port
        self.timeout = timeout
        self.port.timeout = poll_interval
        self._decoder = FrameDecoder()
        self._seq = secrets.randbelow(0xFFFF) + 1

    def send_frame(self, frame: Frame) -> None:
        """Encode and write one frame."""
        self.write(encode_frame(frame))

    def send(self, message: Message, seq: int) -> None:
        """Write `message` in a frame carrying sequence number `seq`."""
        self.send_frame(Frame(message.TYPE, seq, message.encode_payload()))

    def write(self, data: bytes) -> None:
        """Raw bytes onto the line (for frames, and for tests that inject garbage)."""
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush is not None:
                flush()
        except LinkError:
            raise  # from a port of ours (ports.FdPort); LinkTimeoutError is an OSError too
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"serial link broken while writing: {exc}") from exc

    def receive_frame(self, timeout: float | None = None) -> Frame:
        """The next frame; FrameError for a bad one (discarded), LinkTimeoutError when none comes in time."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            frame = self._decoder.next_frame()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeoutError(f"no frame within {limit:.2f} s")
            self._decoder.feed(self._read())

    def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send a request and return the answer carrying its sequence number (possibly an Error).

        Bad frames and stale answers met while waiting are skipped; if nothing valid arrives before
        the deadline, the LinkTimeoutError names the last problem seen, since the microcontroller
        reports a frame it could not read with an ERROR whose sequence number is 0.
        """
        limit = self.timeout if timeout is None else timeout
        seq = self._next_seq()
        self.send(message, seq)
        deadline = time.monotonic() + limit
        problem = ""
        while True:
            # Checked before every read, so a flood of bad or stale frames cannot hold the caller.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                text = f"no answer to {type(message).__name__} within {limit:.2f} s"
                raise LinkTimeoutError(text + (f"; last problem on the link: {problem}" if problem else ""))
            try:
                frame = self.receive_frame(remaining)
            except LinkTimeoutError:
                continue
            except FrameError as exc:
                problem = f"received a bad frame ({exc})"
                continue
            if frame.seq == seq:
                return decode_message(frame.type, frame.payload)
            if frame.seq == 0 and frame.type == Error.TYPE:
                try:
                    report = decode_message(frame.type, frame.payload)
                    problem = f"the microcontroller could not read a frame ({report.code_name}: {report.detail})"
                except ProtocolError:
                    problem = "the microcontroller reported an unreadable frame"

    def close(self) -> None:
        """Close the port; a port that fails while closing is as closed as it will get."""
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> bytes:
        try:
            return self.port.read(max(1, self.port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"serial link broken while reading: {exc}") from exc

    def _next_seq(self) -> int:
        # Sequence numbers run 1..65535; 0 is reserved for reports not tied to a request.
        self._seq = self._seq % 0xFFFF + 1
        return self._seq


def open_link(url: str, timeout: float = DEFAULT_TIMEOUT, baudrate: int = DEFAULT_BAUDRATE) -> Link:
    """Open a link by pyserial URL: `loop://`, `socket://host:port`, `spy://...`, a pty path or a real port."""
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=POLL_INTERVAL, write_timeout=WRITE_TIMEOUT)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise LinkError(f"cannot open {url!r}: {exc}") from exc
    return Link(port, timeout)
