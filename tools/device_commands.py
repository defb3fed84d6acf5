"""`latticelock device ...`: enrol, unlock, passcode, users, delete, wallet, status, and the simulated microcontroller.

Thin: each handler resolves settings (flags, then the configuration file, then defaults) and calls
the library (`device.enrol`, `device.loop.Authenticator`, `device.store.FlashStore`, `device.hardened`,
`device.wallet`, the firmware bridge). Exit codes: 0 accepted / done, 1 rejected, 2 error.

Hardened mode (the default) needs the microcontroller (`--mcu URL`; `sim://DIR` runs a simulated one
in this process). Plain mode is an explicit choice made when the store is created (`enrol --plain`).
Passcodes are read from the terminal without echo, or as one line from standard input when it is
not a terminal (scripts); never from the command line, where other users could read them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from latticelock.device.policy import DEFAULT_POLICY
from latticelock.kernels.params import DEFAULT_FOR_PURPOSE
from latticelock.tools import flags

PLAIN_WARNING = (
    "plain mode: no microcontroller protects this store. A thief who copies the flash recovers each "
    "user's projected face with one Argon2id (the lattice attack), can transplant records, and resets "
    "the host-side lockout by deleting a file. Use it for evaluation, not to protect anything."
)


def _common(parser: argparse.ArgumentParser, store: bool = True) -> None:
    parser.add_argument("--config", help="JSON configuration file (default: $LATTICELOCK_DEVICE_CONFIG or ~/.config/latticelock/device.json)")
    if store:
        parser.add_argument("--store", help="store directory (default: $LATTICELOCK_STORE or ~/.local/share/latticelock/store)")


def _link(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mcu", help="microcontroller URL: /dev/ttyACM0, socket://HOST:PORT, or sim://STATE_DIR[?provisioning=1] "
                                      "for a simulated one in this process")


def _camera(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="frame source URI: v4l2:///dev/video0, csi://0, rtsp://..., file://clip.mp4, dir://folder[?start=I&count=N]")
    parser.add_argument("--input-width", type=int, help="frame width (default: the source's)")
    parser.add_argument("--input-height", type=int, help="frame height (default: the source's)")
    parser.add_argument("--input-rate", type=float, help="frames per second (cameras: requested; replays: pacing; default: as fast as processed)")
    parser.add_argument("--input-loop", type=int, help="replays: 0 once, N extra passes (default 0)")
    parser.add_argument("--input-timeout", type=float, help="seconds to wait for a frame (default 5)")
    _link(parser)
    flags.threads(parser)
    parser.add_argument("--min-face", type=float, help="smallest face side in pixels (default 48)")
    parser.add_argument("--min-sharpness", type=float, help="smallest variance of the Laplacian (default 15)")
    flags.decoder_backend(parser, default=None)


def _unlocking(parser: argparse.ArgumentParser) -> None:
    _camera(parser)
    d = DEFAULT_POLICY
    parser.add_argument("--policy-k", type=int, help=f"matches of one user needed to accept (default {d.k}; may only be raised)")
    parser.add_argument("--policy-n", type=int, help=f"usable frames per attempt (default {d.n}; may only be lowered)")
    parser.add_argument("--policy-window", type=float, help=f"seconds an attempt may last (default {d.window_s:g}; may only be lowered)")
    parser.add_argument("--policy-max-frames", type=int, help=f"frames read per attempt (default {d.max_frames}; may only be lowered)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the outcome of every frame")
    parser.add_argument("--liveness", choices=("none", "turn"), help="turn: a random head-turn challenge a printed photo "
                        "should fail (default: none for unlock, turn for the wallet)")
    parser.add_argument("--liveness-steps", type=int, choices=(1, 2), help="1 turn, or 2 (one way then the other; default 1)")
    parser.add_argument("--replay-turns", choices=("left", "right"),
                        help="replays only (dir://, file://): the way the recording turns, since a recording cannot "
                             "answer a random prompt; a camera always gets a random challenge")


def register(commands) -> None:
    enrol = commands.add_parser("enrol", help="enrol a user from N good frames of a source",
                                description="Enrol a user: N good frames, one consistent face, refused if it unlocks another user, one record.")
    enrol.add_argument("user")
    _common(enrol)
    _camera(enrol)
    enrol.add_argument("--frames", type=int, help="good frames to average (default 5)")
    enrol.add_argument("--max-spread", type=float, help="largest L2 distance of a capture from the captures' medoid (default 1.0)")
    enrol.add_argument("--purpose", choices=("unlock", "wallet"),
                       help=f"what the user will do, which picks the operating point: unlock ({DEFAULT_FOR_PURPOSE['unlock']}, "
                            f"the default) or wallet ({DEFAULT_FOR_PURPOSE['wallet']}, stricter)")
    enrol.add_argument("--parameter-set", help="a named operating point instead of the purpose's (see `latticelock eval policy`)")
    enrol.add_argument("--plain", action="store_true", help="create a PLAIN store (no microcontroller): " + PLAIN_WARNING)
    flags.json_output(enrol)
    enrol.set_defaults(func=_enrol)

    unlock = commands.add_parser("unlock", help="one unlock attempt on a source (or with the passcode)",
                                 description="One unlock attempt: frames from the source until the policy decides; "
                                             "--passcode unlocks with the device passcode instead (and lifts a face lockout).")
    _common(unlock)
    _unlocking(unlock)
    unlock.add_argument("--passcode", action="store_true", help="unlock with the device passcode (read from the terminal or stdin)")
    flags.json_output(unlock)
    unlock.set_defaults(func=_unlock)

    passcode = commands.add_parser("set-passcode", help="set or change the device passcode on the microcontroller",
                                   description="The first passcode is set in provisioning mode; changing it needs the current one.")
    _common(passcode, store=False)
    _link(passcode)
    passcode.set_defaults(func=_set_passcode)

    status = commands.add_parser("status", help="the store's users and the microcontroller's counters")
    _common(status)
    _link(status)
    flags.json_output(status)
    status.set_defaults(func=_status)

    users = commands.add_parser("users", help="list enrolled users (and corrupt entries)")
    _common(users)
    flags.json_output(users)
    users.set_defaults(func=_users)

    delete = commands.add_parser("delete", help="delete an enrolled user (hardened: on the microcontroller too, provisioning mode)")
    delete.add_argument("user")
    _common(delete)
    _link(delete)
    delete.set_defaults(func=_delete)

    wallet = commands.add_parser("wallet", help="a signing key derived from the face, used only when the face is verified")
    actions = wallet.add_subparsers(dest="action", metavar="ACTION", required=True)
    address = actions.add_parser("address", help="unlock, then print the wallet address and public key")
    sign = actions.add_parser("sign", help="unlock, then sign a message")
    for parser in (address, sign):
        _common(parser)
        _unlocking(parser)
        parser.add_argument("--account", type=int, default=0, help="account number (default 0)")
    sign.add_argument("--message", required=True, help="the message to sign (UTF-8, at most 512 bytes)")
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
    sim.add_argument("--state", required=True, help="directory of the microcontroller's own flash (pepper, counters, passcode verifier, users, lattice)")
    sim.add_argument("--provisioning", action="store_true", help="provisioning mode (the kiosk jumper): passcode setting, enrolment, removal")
    sim.set_defaults(func=_mcu_sim)


# --- settings -----------------------------------------------------------------------------------


def _settings(args):
    from latticelock.device.config import load_config

    return load_config(getattr(args, "config", None))


def _str(args, config, name, default=None):
    from latticelock.device.config import setting

    return setting(args, config, name, default, str)


def _int(args, config, name, default=None):
    from latticelock.device.config import setting

    return setting(args, config, name, default, int)


def _float(args, config, name, default=None):
    from latticelock.device.config import setting

    return setting(args, config, name, default, float)


def _store_path(args, config) -> Path:
    from latticelock.device.config import default_store

    return Path(_str(args, config, "store", str(default_store()))).expanduser()


def _store(args, config, create: bool = False, mode: str = "hardened"):
    from latticelock.device.store import FlashStore

    return FlashStore(_store_path(args, config), create=create, mode=mode)


def _source(args, config):
    from latticelock.device.errors import ConfigError
    from latticelock.device.sources import SourceOptions, open_source

    uri = _str(args, config, "source")
    if not uri:
        raise ConfigError("no frame source: give --source URI (or \"source\" in the configuration file)")
    options = SourceOptions(
        width=_int(args, config, "input_width"),
        height=_int(args, config, "input_height"),
        fps=_float(args, config, "input_rate"),
        loop=_int(args, config, "input_loop", 0),
        timeout=_float(args, config, "input_timeout", 5.0),
    )
    return open_source(uri, options)


def _quality(args, config):
    from latticelock.device.quality import QualityConfig

    defaults = QualityConfig()
    return QualityConfig(
        min_face_px=_float(args, config, "min_face", defaults.min_face_px),
        min_sharpness=_float(args, config, "min_sharpness", defaults.min_sharpness),
    )


def _policy(args, config):
    from latticelock.device.policy import DEVICE_LIMITS, PolicyConfig

    d = DEFAULT_POLICY
    policy = PolicyConfig(
        k=_int(args, config, "policy_k", d.k),
        n=_int(args, config, "policy_n", d.n),
        window_s=_float(args, config, "policy_window", d.window_s),
        max_frames=_int(args, config, "policy_max_frames", d.max_frames),
    )
    return policy.check_within(DEVICE_LIMITS)


def _pipeline(args, config):
    from latticelock.models.pipeline import FacePipeline

    return FacePipeline(threads=_int(args, config, "threads"))


def _recipe_options(args, config):
    return {"backend": _str(args, config, "decoder_backend", "auto")}


def _mcu(args, config):
    import contextlib

    from latticelock.device.microcontroller import connect

    url = _str(args, config, "mcu")
    return connect(url) if url else contextlib.nullcontext(None)


def _read_passcode(prompt: str, confirm: bool = False) -> str:
    from latticelock.device.errors import ConfigError

    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != value:
            raise ConfigError("the two passcodes differ")
    else:
        value = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not value:
        raise ConfigError("no passcode given (type it at the prompt, or pipe one line to standard input)")
    return value


def _authorise(mcu) -> None:
    """Open the administrator window on the chip, asking for the passcode unless it is open already."""
    from latticelock.device.errors import ConfigError

    version = mcu.hello()
    if not version.provisioning:
        raise ConfigError("the microcontroller is not in provisioning mode (the kiosk jumper): enrolment and removal are refused")
    if not version.passcode_set:
        raise ConfigError("set the device passcode first: latticelock device set-passcode --mcu URL")
    if not mcu.status()["admin"]:
        mcu.passcode(_read_passcode("device passcode: "))


# --- handlers -----------------------------------------------------------------------------------


def _enrol(args) -> int:
    from latticelock.device.enrol import EnrolConfig, capture_good_frames, make_template, store_template
    from latticelock.device.errors import ConfigError
    from latticelock.device.store import FlashStore

    config = _settings(args)
    flags.check_json_target(args.json)
    plain = bool(args.plain or config.get("plain", False))
    enrol_config = EnrolConfig(
        frames=_int(args, config, "frames", 5),
        max_spread=_float(args, config, "max_spread", 1.0),
        quality=_quality(args, config),
    )
    purpose = _str(args, config, "purpose", "unlock")
    if purpose not in ("unlock", "wallet"):
        raise ConfigError(f"setting purpose must be unlock or wallet, got {purpose!r}")
    parameter_set = _str(args, config, "parameter_set", DEFAULT_FOR_PURPOSE[purpose])
    _describe_operating_point(parameter_set)
    path = _store_path(args, config)
    if (path / "STORE").exists():
        mode = FlashStore(path, create=False).mode
        if plain and mode != "plain":
            raise ConfigError(f"{path} is a hardened store; --plain applies to new stores only")
    else:
        mode = "plain" if plain else "hardened"
    with _mcu(args, config) as mcu:
        if mode == "hardened":
            if mcu is None:
                raise ConfigError("hardened enrolment needs the microcontroller (--mcu URL; sim://DIR for a simulated one), "
                                  "or --plain for a store without one")
            _authorise(mcu)
        elif mcu is not None:
            raise ConfigError("a plain store has no microcontroller: drop --mcu")
        with _source(args, config) as source:
            capture = capture_good_frames(source, _pipeline(args, config), enrol_config)
            skipped = list(source.skipped)
        template = make_template(capture.embeddings)
        # Created only now: a failed capture leaves no empty store behind.
        store = FlashStore(path, create=True, mode=mode)
        user, public_key = store_template(args.user, template, store, parameter_set, mcu=mcu,
                                          recipe_options=_recipe_options(args, config))
    rejected = ", ".join(f"{n} {why}" for why, n in capture.rejected.most_common()) or "none"
    print(f"enrolled {user.name!r} (generation {user.generation}) from {len(capture.names)} frames of {capture.seen} read; rejected: {rejected}")
    print(f"stored {len(user.record_bytes)} bytes of {user.scheme_id} record in {store.path}; "
          f"operating point {_describe_operating_point(parameter_set)}")
    if mode == "hardened":
        print(f"hardened: the helper data is sealed to the microcontroller, which matches every face itself; "
              f"unlock public key {public_key.hex()}")
    else:
        print(f"WARNING: {PLAIN_WARNING}")
    for frame in skipped:
        print(f"skipped unreadable frame {frame.name}: {frame.reason}")
    flags.write_json(args.json, {
        "user": user.name, "generation": user.generation, "scheme": user.scheme_id, "parameter_set": parameter_set,
        "record_bytes": len(user.record_bytes), "frames_used": capture.names, "frames_read": capture.seen,
        "rejected": dict(capture.rejected), "hardened": mode == "hardened",
        "public_key": public_key.hex() if public_key else None,
    })
    return 0


def _liveness(args, config, default: str):
    """The attempt's liveness setting (None: off); a fixed direction only for a replayed recording."""
    from latticelock.device.errors import ConfigError
    from latticelock.device.liveness import Liveness, LivenessConfig

    if _str(args, config, "liveness", default) == "none":
        return None
    if _str(args, config, "liveness", default) != "turn":
        raise ConfigError(f"setting liveness must be none or turn, got {_str(args, config, 'liveness', default)!r}")
    steps = _int(args, config, "liveness_steps", 1)
    turns = args.replay_turns
    challenge = None
    if turns is not None:
        uri = _str(args, config, "source") or ""
        if not uri.startswith(("dir://", "file://")):
            raise ConfigError("--replay-turns is for recordings (dir://, file://); a camera always gets a random challenge")
        challenge = (turns,) if steps == 1 else (turns, "right" if turns == "left" else "left")

    def prompt(p) -> None:
        print(f"liveness: {p}", flush=True)

    return Liveness(LivenessConfig(steps=steps), prompt, challenge)


def _describe_operating_point(parameter_set: str) -> str:
    """The operating point in words (ParameterSetError, exit 2, for a name that does not exist)."""
    from latticelock.kernels.params import OPERATING_POINTS, get_parameter_set

    get_parameter_set(parameter_set)
    point = OPERATING_POINTS.get(parameter_set)
    if point is None or point.far_per_attempt is None:
        return f"{parameter_set} (a comparison set of the paper's 1% false-match point: not for a device)"
    return f"{parameter_set} ({point.purpose}: calibrated for at most {point.far_per_attempt:g} false accepts per attempt)"


def _attempt(args, config, mcu, purpose: int = 1, account: int = 0, message: bytes = b"", liveness_default: str = "none"):
    from latticelock.device.loop import Authenticator

    store = _store(args, config)
    policy = _policy(args, config)
    liveness = _liveness(args, config, liveness_default)
    auth = Authenticator(store, _pipeline(args, config), policy=policy, quality=_quality(args, config), mcu=mcu,
                         recipe_options=_recipe_options(args, config))
    with _source(args, config) as source:
        result = auth.unlock(source, purpose, account, message, liveness)
    if args.verbose:
        for frame in result.frames:
            print(f"  frame {frame.index} {Path(frame.name).name}: {frame.outcome}")
    return result, policy


def _verdict_line(result, policy) -> str:
    verdict = result.verdict
    if result.accepted:
        line = f"ACCEPT {verdict.user!r}: {verdict.frames} usable frames ({policy.describe()}), {result.latency_s:.2f} s"
        if result.proof is not None:
            line += "; the microcontroller matched the face and signed its session nonce"
        return line
    return f"REJECT: {verdict.reason}; {verdict.frames} usable of {result.frames_read} frames read, {result.latency_s:.2f} s"


def _unlock(args) -> int:
    from latticelock.device.errors import ConfigError

    config = _settings(args)
    flags.check_json_target(args.json)
    with _mcu(args, config) as mcu:
        if args.passcode:
            if mcu is None:
                raise ConfigError("the passcode lives on the microcontroller: give --mcu URL")
            mcu.passcode(_read_passcode("device passcode: "))
            print("UNLOCKED with the passcode; the face lockout is lifted")
            return 0
        result, policy = _attempt(args, config, mcu)
        if result.proof is not None:
            from latticelock.firmware_bridge.keys import verify_unlock

            if not verify_unlock(result.proof.public_key, result.proof.nonce, result.user, result.proof.signature):
                raise ConfigError("the microcontroller's signature does not verify: the link or the chip is not ours")
    print(_verdict_line(result, policy))
    flags.write_json(args.json, {
        "decision": result.verdict.decision.value, "user": result.user, "reason": result.verdict.reason,
        "usable_frames": result.verdict.frames, "frames_read": result.frames_read,
        "latency_s": result.latency_s, "policy": policy.describe(), "hardened": result.proof is not None,
        "frames": [{"index": f.index, "name": f.name, "outcome": f.outcome, "seconds": f.seconds} for f in result.frames],
    })
    return 0 if result.accepted else 1


def _set_passcode(args) -> int:
    from latticelock.device.errors import ConfigError

    config = _settings(args)
    with _mcu(args, config) as mcu:
        if mcu is None:
            raise ConfigError("the passcode lives on the microcontroller: give --mcu URL")
        current = _read_passcode("current passcode: ") if mcu.hello().passcode_set else ""
        mcu.set_passcode(_read_passcode("new passcode: ", confirm=True), current)
    print("device passcode set on the microcontroller (it never leaves it)")
    return 0


def _status(args) -> int:
    config = _settings(args)
    flags.check_json_target(args.json)
    store = _store(args, config)
    users = store.users()
    print(f"store {store.path}: {store.mode}, {len(users)} users")
    report = {"store": str(store.path), "mode": store.mode, "users": [u.name for u in users]}
    with _mcu(args, config) as mcu:
        if mcu is not None:
            status = mcu.status()
            report["microcontroller"] = status
            print("microcontroller: " + ", ".join(f"{k} {v}" for k, v in status.items()))
    flags.write_json(args.json, report)
    return 0


def _users(args) -> int:
    from datetime import datetime, timezone

    config = _settings(args)
    flags.check_json_target(args.json)
    scan = _store(args, config).scan()
    print(f"{'user':<24} {'scheme':<16} {'parameter set':<22} {'bytes':>6} {'gen':>4}  enrolled (UTC)")
    rows = []
    for user in scan.users:
        when = datetime.fromtimestamp(user.enrolled_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        parameter_set = user.parameter_set or "?"
        print(f"{user.name:<24} {user.scheme_id:<16} {parameter_set:<22} {len(user.record_bytes):>6} {user.generation:>4}  {when}")
        rows.append({"name": user.name, "scheme": user.scheme_id, "parameter_set": user.parameter_set,
                     "record_bytes": len(user.record_bytes), "generation": user.generation, "enrolled_at": user.enrolled_at})
    for entry in scan.corrupt:
        print(f"CORRUPT {entry.path.name}: {entry.reason}")
    flags.write_json(args.json, {"users": rows, "corrupt": [{"file": e.path.name, "reason": e.reason} for e in scan.corrupt]})
    return 0


def _delete(args) -> int:
    from latticelock.device.errors import ConfigError

    config = _settings(args)
    store = _store(args, config)
    store.get(args.user)
    with _mcu(args, config) as mcu:
        if store.mode == "hardened":
            from latticelock.device.hardened import reconcile, remove

            if mcu is None:
                raise ConfigError("removing a hardened user needs its microcontroller in provisioning mode (--mcu URL)")
            _authorise(mcu)
            reconcile(store, mcu)
            remove(store, mcu, args.user)
        else:
            store.delete(args.user)
    print(f"deleted {args.user!r}" + (" (on the microcontroller too)" if store.mode == "hardened" else ""))
    return 0


def _wallet_attempt(args, purpose: int, message: bytes = b""):
    from latticelock.device.errors import ConfigError

    config = _settings(args)
    if not 0 <= args.account < 2**31:
        raise ConfigError(f"--account must be in [0, 2^31), got {args.account}")
    with _mcu(args, config) as mcu:
        result, policy = _attempt(args, config, mcu, purpose, args.account, message, liveness_default="turn")
    if not result.accepted:
        print(_verdict_line(result, policy))
        return None
    print(f"unlocked as {result.user!r}")
    return result


def _wallet_address(args) -> int:
    from latticelock.device import wallet
    from latticelock.firmware_bridge.messages import Purpose

    result = _wallet_attempt(args, Purpose.WALLET_ADDRESS)
    if result is None:
        return 1
    public = result.proof.public_key if result.proof is not None else wallet.public_key_of(result.key, args.account)
    print(f"address:    {wallet.address_of(public)}")
    print(f"public key: {public.hex()}")
    return 0


def _wallet_sign(args) -> int:
    from latticelock.device import wallet
    from latticelock.device.errors import ConfigError
    from latticelock.firmware_bridge.messages import MAX_MESSAGE, Purpose

    message = args.message.encode("utf-8")
    if not 0 < len(message) <= MAX_MESSAGE:
        raise ConfigError(f"the message must be 1 to {MAX_MESSAGE} bytes of UTF-8, got {len(message)}")
    result = _wallet_attempt(args, Purpose.WALLET_SIGN, message)
    if result is None:
        return 1
    if result.proof is not None:
        signed = wallet.Signed(wallet.address_of(result.proof.public_key), result.proof.public_key, message, result.proof.signature)
        if not wallet.verify(signed.public_key, message, signed.signature):
            raise ConfigError("the microcontroller's signature does not verify")
    else:
        signed = wallet.sign(result.key, message, args.account)
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
    from latticelock.device.errors import ConfigError
    from latticelock.firmware_bridge.simulator import run_simulator

    def ready(address: str) -> None:
        mode = "provisioning" if args.provisioning else "normal (no enrolment)"
        print(f"microcontroller simulator at {address}, {mode} mode, state in {args.state}", flush=True)

    state = Path(args.state)
    if state.exists() and not state.is_dir():
        raise ConfigError(f"--state {state} is not a directory")
    state.mkdir(parents=True, exist_ok=True)
    try:
        run_simulator(args.url, state, provisioning=args.provisioning, on_ready=ready)
    except KeyboardInterrupt:
        print("microcontroller simulator stopped", file=sys.stderr)
    return 0
