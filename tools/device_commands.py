"""`latticelock device ...`: enrol, unlock, users, delete, wallet, and the simulated microcontroller.

Thin: each handler resolves settings (flags, then the configuration file, then defaults) and calls
the library (`enrol`, `loop.Authenticator`, `store.FlashStore`, `wallet`, the firmware bridge).
Exit codes: 0 accepted / done, 1 rejected, 2 error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from latticelock.kernels.params import DEFAULT_SET as DEFAULT_PARAMETER_SET


def _common(parser: argparse.ArgumentParser, store: bool = True) -> None:
    parser.add_argument("--config", help="JSON configuration file (default: $LATTICELOCK_DEVICE_CONFIG or ~/.config/latticelock/device.json)")
    if store:
        parser.add_argument("--store", help="store directory (default: $LATTICELOCK_STORE or ~/.local/share/latticelock/store)")


def _camera(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="frame source URI: v4l2:///dev/video0, csi://0, rtsp://..., file://clip.mp4, dir://folder[?start=I&count=N]")
    parser.add_argument("--input-width", type=int, help="frame width (default: the source's)")
    parser.add_argument("--input-height", type=int, help="frame height (default: the source's)")
    parser.add_argument("--input-rate", type=float, help="frames per second (cameras: requested; replays: pacing; default: as fast as processed)")
    parser.add_argument("--input-loop", type=int, help="replays: 0 once, N extra passes, -1 forever (default 0)")
    parser.add_argument("--input-timeout", type=float, help="seconds to wait for a frame (default 5)")
    parser.add_argument("--mcu", help="microcontroller link URL (socket://HOST:PORT, /dev/ttyACM0, a pty path); hardened mode when given")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--min-face", type=float, help="smallest face side in pixels (default 48)")
    parser.add_argument("--min-sharpness", type=float, help="smallest variance of the Laplacian (default 15)")
    parser.add_argument("--decoder-backend", choices=("auto", "cpu", "gpu"), help="lattice decoder backend (default auto)")


def _unlocking(parser: argparse.ArgumentParser) -> None:
    _camera(parser)
    parser.add_argument("--policy-k", type=int, help="matches of one user needed to accept (default 2)")
    parser.add_argument("--policy-n", type=int, help="usable frames per attempt (default 3)")
    parser.add_argument("--policy-window", type=float, help="seconds an attempt may last (default 10)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the outcome of every frame")


def register(commands) -> None:
    enrol = commands.add_parser("enrol", help="enrol a user from N good frames of a source", description="Enrol a user: N good frames, one consistent face, one Gen, one stored record.")
    enrol.add_argument("user")
    _common(enrol)
    _camera(enrol)
    enrol.add_argument("--frames", type=int, help="good frames to average (default 5)")
    enrol.add_argument("--max-spread", type=float, help="largest L2 distance of a capture from the captures' medoid (default 1.0)")
    enrol.add_argument("--parameter-set", help=f"L2FE-Hash parameter set (default {DEFAULT_PARAMETER_SET})")
    enrol.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    enrol.set_defaults(func=_enrol)

    unlock = commands.add_parser("unlock", help="one unlock attempt on a source", description="One unlock attempt: frames from the source until the policy decides.")
    _common(unlock)
    _unlocking(unlock)
    unlock.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    unlock.set_defaults(func=_unlock)

    users = commands.add_parser("users", help="list enrolled users (and corrupt entries)")
    _common(users)
    users.add_argument("--json", metavar="OUT", help="also write the list as JSON")
    users.set_defaults(func=_users)

    delete = commands.add_parser("delete", help="delete an enrolled user")
    delete.add_argument("user")
    _common(delete)
    delete.add_argument("--mcu", help="also remove the user's public key from the microcontroller (provisioning mode)")
    delete.set_defaults(func=_delete)

    wallet = commands.add_parser("wallet", help="a signing key derived from the face at unlock time only")
    actions = wallet.add_subparsers(dest="action", metavar="ACTION", required=True)
    address = actions.add_parser("address", help="unlock, then print the wallet address and public key")
    sign = actions.add_parser("sign", help="unlock, then sign a message")
    for parser in (address, sign):
        _common(parser)
        _unlocking(parser)
        parser.add_argument("--account", type=int, default=0, help="account number (default 0)")
    sign.add_argument("--message", required=True, help="the message to sign (UTF-8)")
    address.set_defaults(func=_wallet_address)
    sign.set_defaults(func=_wallet_sign)
    verify = actions.add_parser("verify", help="check a wallet signature (no face needed)")
    verify.add_argument("--public-key", required=True, help="hex")
    verify.add_argument("--message", required=True)
    verify.add_argument("--signature", required=True, help="hex")
    verify.add_argument("--address", help="also check that the key has this address")
    verify.set_defaults(func=_wallet_verify)

    sim = commands.add_parser("mcu-sim", help="run the simulated microcontroller", description="Serve the simulated microcontroller until interrupted.")
    sim.add_argument("--url", required=True, help="listen://HOST:PORT (clients use socket://HOST:PORT), pty, or a pyserial URL/device")
    sim.add_argument("--state", required=True, help="directory of the microcontroller's own flash (pepper, public keys, counters)")
    sim.add_argument("--provisioning", action="store_true", help="provisioning mode (the kiosk jumper): accept ENROLL_PUBKEY")
    sim.set_defaults(func=_mcu_sim)


# --- settings -----------------------------------------------------------------------------------


def _settings(args):
    from latticelock.device.config import load_config

    return load_config(getattr(args, "config", None))


def _store(args, config, create=True):
    from latticelock.device.config import default_store, resolve
    from latticelock.device.store import FlashStore

    return FlashStore(Path(resolve(args, config, "store", default_store())).expanduser(), create=create)


def _source(args, config):
    from latticelock.device.config import resolve
    from latticelock.device.errors import ConfigError
    from latticelock.device.sources import SourceOptions, open_source

    uri = resolve(args, config, "source", None)
    if not uri:
        raise ConfigError("no frame source: give --source URI (or \"source\" in the configuration file)")
    options = SourceOptions(
        width=_resolve_int(args, config, "input_width", None),
        height=_resolve_int(args, config, "input_height", None),
        fps=_resolve_float(args, config, "input_rate", None),
        loop=_resolve_int(args, config, "input_loop", 0),
        timeout=_resolve_float(args, config, "input_timeout", 5.0),
    )
    return open_source(uri, options)


def _quality(args, config):
    from latticelock.device.quality import QualityConfig

    defaults = QualityConfig()
    return QualityConfig(
        min_face_px=_resolve_float(args, config, "min_face", defaults.min_face_px),
        min_sharpness=_resolve_float(args, config, "min_sharpness", defaults.min_sharpness),
    )


def _resolve_number(args: argparse.Namespace, config: dict, name: str, default: float | None, kind: type) -> float | None:
    from latticelock.device.config import resolve
    from latticelock.device.errors import ConfigError

    value = resolve(args, config, name, default)
    if value is None:
        return None
    # A configuration file can hold any JSON: a string or a list here must be a clear error, not a traceback.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ConfigError(f"setting {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _resolve_float(args: argparse.Namespace, config: dict, name: str, default: float | None) -> float | None:
    return _resolve_number(args, config, name, default, float)


def _resolve_int(args: argparse.Namespace, config: dict, name: str, default: int | None) -> int | None:
    value = _resolve_number(args, config, name, default, int)
    return None if value is None else int(value)


def _pipeline(args, config):
    from latticelock.device.config import resolve
    from latticelock.models.pipeline import FacePipeline

    return FacePipeline(threads=resolve(args, config, "threads", None))


def _recipe_options(args, config):
    from latticelock.device.config import resolve

    return {"backend": resolve(args, config, "decoder_backend", "auto")}


@contextlib.contextmanager
def _mcu(args, config):
    from latticelock.device.config import resolve

    url = resolve(args, config, "mcu", None)
    if not url:
        yield None
        return
    from latticelock.firmware_bridge.client import McuClient
    from latticelock.firmware_bridge.link import open_link

    client = McuClient(open_link(url, timeout=5.0))
    try:
        client.hello()
        yield client
    finally:
        client.close()


def _write_json(path, data) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


# --- handlers -----------------------------------------------------------------------------------


def _enrol(args) -> int:
    from latticelock.device.config import resolve
    from latticelock.device.enrol import EnrolConfig, enrol

    config = _settings(args)
    store = _store(args, config)
    enrol_config = EnrolConfig(
        frames=_resolve_int(args, config, "frames", 5),
        max_spread=_resolve_float(args, config, "max_spread", 1.0),
        quality=_quality(args, config),
    )
    parameter_set = resolve(args, config, "parameter_set", DEFAULT_PARAMETER_SET)
    pipeline = _pipeline(args, config)
    with _mcu(args, config) as mcu, _source(args, config) as source:
        result = enrol(args.user, source, pipeline, store, parameter_set, enrol_config, recipe_options=_recipe_options(args, config))
    rejected = ", ".join(f"{n} {why}" for why, n in result.capture.rejected.most_common()) or "none"
    user = result.user
    print(f"enrolled {user.name!r} (generation {user.generation}) from {len(result.capture.names)} frames of {result.capture.seen} read; rejected: {rejected}")
    print(f"stored {len(user.record_bytes)} bytes of {user.scheme_id} helper data ({parameter_set}) in {store.path}")
    if result.hardened:
        print(f"hardened: the verifier needs the microcontroller's pepper; it holds the unlock public key {result.public_key.hex()}")
    for skipped in source.skipped:
        print(f"skipped unreadable frame {skipped.name}: {skipped.reason}")
    _write_json(args.json, {
        "user": user.name, "generation": user.generation, "scheme": user.scheme_id, "parameter_set": parameter_set,
        "record_bytes": len(user.record_bytes), "frames_used": result.capture.names, "frames_read": result.capture.seen,
        "rejected": dict(result.capture.rejected), "hardened": result.hardened,
        "public_key": result.public_key.hex() if result.public_key else None,
    })
    return 0


def _authenticate(args, config, mcu):
    from latticelock.device.loop import Authenticator
    from latticelock.device.policy import PolicyConfig

    store = _store(args, config, create=False)
    policy = PolicyConfig(
        k=_resolve_int(args, config, "policy_k", 2),
        n=_resolve_int(args, config, "policy_n", 3),
        window_s=_resolve_float(args, config, "policy_window", 10.0),
    )
    auth = Authenticator(store, _pipeline(args, config), policy=policy, quality=_quality(args, config), recipe_options=_recipe_options(args, config))
    with _source(args, config) as source:
        result = auth.unlock(source)
    if args.verbose:
        for frame in result.frames:
            print(f"  frame {frame.index} {Path(frame.name).name}: {frame.outcome}")
    return result, policy


def _verdict_line(result, policy) -> str:
    verdict = result.verdict
    if result.accepted:
        line = f"ACCEPT {verdict.user!r}: {verdict.matches} matching of {verdict.frames} usable frames ({policy.describe()}), {result.latency_s:.2f} s"
        return line
    return f"REJECT: {verdict.reason}; {verdict.frames} usable of {result.frames_read} frames read, {result.latency_s:.2f} s"


def _unlock(args) -> int:
    config = _settings(args)
    with _mcu(args, config) as mcu:
        result, policy = _authenticate(args, config, mcu)
    print(_verdict_line(result, policy))
    _write_json(args.json, {
        "decision": result.verdict.decision.value, "user": result.user, "reason": result.verdict.reason,
        "usable_frames": result.verdict.frames, "matches": result.verdict.matches, "frames_read": result.frames_read,
        "latency_s": result.latency_s, "policy": policy.describe(),
        "frames": [{"index": f.index, "name": f.name, "outcome": f.outcome, "seconds": f.seconds} for f in result.frames],
    })
    return 0 if result.accepted else 1


def _users(args) -> int:
    config = _settings(args)
    scan = _store(args, config, create=False).scan()
    from datetime import datetime, timezone

    print(f"{'user':<24} {'scheme':<16} {'bytes':>6} {'gen':>4}  enrolled (UTC)")
    for user in scan.users:
        when = datetime.fromtimestamp(user.enrolled_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{user.name:<24} {user.scheme_id:<16} {len(user.record_bytes):>6} {user.generation:>4}  {when}")
    for entry in scan.corrupt:
        print(f"CORRUPT {entry.path.name}: {entry.reason}")
    _write_json(getattr(args, "json", None), {
        "users": [{"name": u.name, "scheme": u.scheme_id, "record_bytes": len(u.record_bytes), "generation": u.generation, "enrolled_at": u.enrolled_at} for u in scan.users],
        "corrupt": [{"file": e.path.name, "reason": e.reason} for e in scan.corrupt],
    })
    return 0


def _delete(args) -> int:
    config = _settings(args)
    store = _store(args, config, create=False)
    store.get(args.user)
    with _mcu(args, config) as mcu:
        if mcu is not None:
            mcu.remove_user(args.user)
    store.delete(args.user)
    print(f"deleted {args.user!r}" + (" (and its public key on the microcontroller)" if mcu is not None else ""))
    return 0


def _wallet_unlock(args):
    config = _settings(args)
    with _mcu(args, config) as mcu:
        result, policy = _authenticate(args, config, mcu)
    if not result.accepted:
        print(_verdict_line(result, policy))
        return None
    print(f"unlocked as {result.user!r}")
    return result


def _wallet_address(args) -> int:
    from latticelock.device import wallet

    result = _wallet_unlock(args)
    if result is None:
        return 1
    public = wallet.public_key_of(result.key, args.account)
    print(f"address:    {wallet.address_of(public)}")
    print(f"public key: {public.hex()}")
    return 0


def _wallet_sign(args) -> int:
    from latticelock.device import wallet

    result = _wallet_unlock(args)
    if result is None:
        return 1
    signed = wallet.sign(result.key, args.message.encode("utf-8"), args.account)
    print(f"address:    {signed.address}")
    print(f"public key: {signed.public_key.hex()}")
    print(f"signature:  {signed.signature.hex()}")
    return 0


def _wallet_verify(args) -> int:
    from latticelock.device import wallet
    from latticelock.device.errors import ConfigError

    try:
        public, signature = bytes.fromhex(args.public_key), bytes.fromhex(args.signature)
    except ValueError:
        raise ConfigError("--public-key and --signature must be hex") from None
    ok = wallet.verify(public, args.message.encode("utf-8"), signature, args.address)
    print("valid" if ok else "INVALID")
    return 0 if ok else 1


def _mcu_sim(args) -> int:
    from latticelock.firmware_bridge.simulator import run_simulator

    def ready(address: str) -> None:
        mode = "provisioning" if args.provisioning else "locked (no enrolment)"
        print(f"microcontroller simulator at {address}, {mode} mode, state in {args.state}", flush=True)

    Path(args.state).mkdir(parents=True, exist_ok=True)
    try:
        run_simulator(args.url, Path(args.state), provisioning=args.provisioning, on_ready=ready)
    except KeyboardInterrupt:
        print("microcontroller simulator stopped", file=sys.stderr)
    return 0
