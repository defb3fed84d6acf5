"""The kiosk's one connection to its microcontroller: opened on first use, reopened after a lost link.

A kiosk runs for hours while the board may be unplugged, reset or (for `socket://`) its simulator
stopped. A broken link must not take the web app down with it, nor leave it holding a dead client:
`use()` drops the client on a link or protocol failure and says so in words, and the next request
connects afresh (the chip then asks for the passcode again, as after any restart).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING

from latticelock.device.errors import ChipUnreachableError, DeviceError
from latticelock.device.microcontroller import SIM_SCHEME, connect

if TYPE_CHECKING:
    from latticelock.firmware_bridge.client import McuClient


class Chip:
    """The microcontroller at `url`, shared by every request of the kiosk (the client serialises requests)."""

    def __init__(self, url: str, opener: Callable[[str], AbstractContextManager["McuClient"]] = connect) -> None:
        self.url = url
        self._opener = opener
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._client: "McuClient | None" = None

    @property
    def description(self) -> str:
        if self.url.startswith(SIM_SCHEME):
            return f"simulated microcontroller in this process ({self.url})"
        return f"microcontroller at {self.url}"

    def client(self) -> "McuClient":
        """The connected client, connecting first if there is none (ChipUnreachableError when the chip does not answer)."""
        from latticelock.firmware_bridge.errors import BridgeError

        with self._lock:
            if self._client is None:
                stack = ExitStack()
                try:
                    self._client = stack.enter_context(self._opener(self.url))
                except (BridgeError, DeviceError, OSError) as exc:
                    stack.close()
                    raise ChipUnreachableError(f"the {self.description} does not answer: {exc}") from None
                self._stack = stack
            return self._client

    @contextlib.contextmanager
    def use(self) -> Iterator["McuClient"]:
        """The client for one piece of work; a broken link closes it and becomes a ChipUnreachableError in words.

        The microcontroller's refusals (`McuError`) pass through: callers put each into words."""
        from latticelock.firmware_bridge.errors import LinkError, ProtocolError

        client = self.client()
        try:
            yield client
        except (LinkError, ProtocolError) as exc:
            self._drop(client)
            raise ChipUnreachableError(f"lost the {self.description}: {exc}. Check that it is attached; "
                             "the next request reconnects") from None

    def _drop(self, client: "McuClient") -> None:
        from latticelock.firmware_bridge.errors import BridgeError

        with self._lock:
            # Another request may already have replaced a client that failed twice.
            if self._client is not client:
                return
            stack, self._stack, self._client = self._stack, None, None
        # Closing a link that already broke can fail again; it is gone either way.
        with contextlib.suppress(BridgeError, OSError):
            stack.close()

    def close(self) -> None:
        """Close the link (and stop a simulated chip); a later `use()` reconnects."""
        with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            stack.close()
