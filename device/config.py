"""Device settings: command-line flags over a JSON configuration file over built-in defaults.

The configuration file is `--config FILE`, else `$LATTICELOCK_DEVICE_CONFIG`, else
`~/.config/latticelock/device.json` when it exists. Its keys are the long flag names with dashes
as underscores, e.g. {"store": "/var/lib/latticelock", "mcu": "/dev/ttyACM0", "policy_k": 2}.
The store defaults to `$LATTICELOCK_STORE`, else `~/.local/share/latticelock/store`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from latticelock.device.errors import ConfigError

DEFAULT_CONFIG = Path("~/.config/latticelock/device.json")
DEFAULT_STORE = Path("~/.local/share/latticelock/store")


def default_store() -> Path:
    return Path(os.environ.get("LATTICELOCK_STORE") or DEFAULT_STORE).expanduser()


def load_config(path: str | Path | None) -> dict[str, Any]:
    """The settings in the configuration file (empty when none is named and the default is absent)."""
    named = path or os.environ.get("LATTICELOCK_DEVICE_CONFIG")
    candidate = Path(named or DEFAULT_CONFIG).expanduser()
    if not candidate.exists():
        if named:
            raise ConfigError(f"configuration file {candidate} does not exist")
        return {}
    try:
        data = json.loads(candidate.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{candidate}: not a readable JSON configuration ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{candidate}: the configuration must be a JSON object")
    return data


def resolve(args: Any, config: dict[str, Any], name: str, default: Any) -> Any:
    """A setting: the flag if given, else the configuration file's value, else `default`."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    return config.get(name, default)


def setting(args: Any, config: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    """`resolve`, checked to be of `kind` (str, int or float): a configuration file can hold any JSON,
    and a number where a path belongs must be a clear error, not a traceback."""
    value = resolve(args, config, name, default)
    if value is None:
        return None
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"setting {name} must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ConfigError(f"setting {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)
