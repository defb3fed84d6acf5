"""The device's connection to its microcontroller, opened by URL.

- `/dev/ttyACM0`, `socket://HOST:PORT`, any pyserial URL: a real board or a simulator elsewhere;
- `sim://STATE_DIR[?provisioning=1]`: a simulated microcontroller in this process, keeping its own
  flash in STATE_DIR (the embedded default of the kiosk and the walkthrough when no board is
  attached; `provisioning=1` stands for the kiosk jumper).

`connect` checks the protocol version (HELLO) before handing the client over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from latticelock.device.errors import ConfigError
from latticelock.firmware_bridge.client import McuClient

SIM_SCHEME = "sim://"


@contextlib.contextmanager
def connect(url: str, timeout: float = 5.0) -> Iterator[McuClient]:
    """A checked client for the microcontroller at `url` (see the module docstring), closed on exit."""
    if url.startswith(SIM_SCHEME):
        from latticelock.firmware_bridge.simulator import embedded

        state_dir, provisioning = parse_sim_url(url)
        with embedded(state_dir, provisioning=provisioning, timeout=timeout) as (client, _):
            client.hello()
            yield client
        return
    from latticelock.firmware_bridge.link import open_link

    client = McuClient(open_link(url, timeout=timeout))
    try:
        client.hello()
        yield client
    finally:
        client.close()


def parse_sim_url(url: str) -> tuple[Path, bool]:
    """(state directory, provisioning) of a `sim://` URL."""
    parts = urlsplit(url)
    path = (parts.netloc + parts.path) or ""
    if not path:
        raise ConfigError(f"{url!r}: give the simulator's state directory, e.g. sim:///var/lib/latticelock/mcu")
    query = parse_qs(parts.query)
    unknown = set(query) - {"provisioning"}
    if unknown:
        raise ConfigError(f"{url!r}: unknown option {sorted(unknown)[0]!r} (only provisioning=1)")
    flag = query.get("provisioning", ["0"])[-1]
    if flag not in ("0", "1"):
        raise ConfigError(f"{url!r}: provisioning must be 0 or 1")
    return Path(path).expanduser(), flag == "1"
