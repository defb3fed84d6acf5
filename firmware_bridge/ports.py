"""Byte transports that pyserial has no URL for, used by the simulator's end of a link.

pyserial opens the client's end of everything (a pty path, `socket://host:port`, a real port), but
not the master side of a pseudo-terminal nor a connection accepted by a listening socket. `FdPort`
gives both the small part of pyserial's port interface that `Link` uses: `read`, `write`,
`in_waiting`, `timeout`, `close`.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import termios
import time
import tty
from collections.abc import Callable

from latticelock.firmware_bridge.errors import LinkError, LinkTimeoutError

# A peer that stops reading fills the kernel buffer; past this many seconds without progress the
# write fails instead of blocking the simulator's thread for ever (and `stop()` with it).
WRITE_TIMEOUT = 5.0


class FdPort:
    """A port over a readable and writable file descriptor (a pty master or a connected socket)."""

    def __init__(
        self,
        fd: int,
        timeout: float | None = None,
        on_close: Callable[[], None] | None = None,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.fd = fd
        self.timeout = timeout
        self.write_timeout = write_timeout
        # A blocking write to a tty waits until every byte fits, whatever select said; non-blocking
        # writes return what fitted, so the deadline below is honoured.
        os.set_blocking(fd, False)
        self._on_close = on_close
        self.is_open = True

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes, returning as soon as any are available; b"" after `timeout` seconds."""
        self._check_open()
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise LinkError(f"read failed: {exc}") from exc
        if not data:
            raise LinkError("the other end closed the connection")
        return data

    def write(self, data: bytes) -> int:
        """Write all of `data`; LinkTimeoutError if the peer accepts nothing for `write_timeout` seconds."""
        self._check_open()
        view = memoryview(bytes(data))
        deadline = time.monotonic() + self.write_timeout
        try:
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeoutError(f"write stalled: the other end read nothing for {self.write_timeout:.1f} s")
                if not select.select([], [self.fd], [], remaining)[1]:
                    continue
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    continue
                view = view[written:]
                deadline = time.monotonic() + self.write_timeout
        except LinkError:
            raise  # LinkTimeoutError is also a TimeoutError, hence an OSError: keep it as it is
        except OSError as exc:
            raise LinkError(f"write failed: {exc}") from exc
        return len(data)

    @property
    def in_waiting(self) -> int:
        """Bytes that can be read without waiting."""
        self._check_open()
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self.fd, termios.FIONREAD, count)
        except OSError as exc:
            raise LinkError(f"cannot query the port: {exc}") from exc
        return count[0]

    def close(self) -> None:
        """Close the port once (later calls do nothing)."""
        if self.is_open:
            self.is_open = False
            if self._on_close is not None:
                self._on_close()

    def _check_open(self) -> None:
        if not self.is_open:
            raise LinkError("port is closed")


def open_pty(timeout: float | None = None) -> tuple[FdPort, str]:
    """A pseudo-terminal pair: the master as a port, and the slave's path for a client to open.

    The slave is put in raw mode and kept open here, so the master neither echoes bytes nor reads
    end-of-file between two clients; closing the returned port closes both ends.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    def close_both() -> None:
        os.close(master)
        os.close(slave)

    return FdPort(master, timeout, close_both), path


def socket_port(conn: socket.socket, timeout: float | None = None) -> FdPort:
    """A port over an accepted connection; closing the port closes the socket."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return FdPort(conn.fileno(), timeout, conn.close)
