"""`latticelock kiosk serve`: the operator's local web app for provisioning users at a kiosk.

Thin: resolves the defaults, builds `device.kiosk.station.Kiosk` and serves `device.kiosk.app` on
uvicorn. With nothing attached it still runs: a temporary store and a simulated microcontroller in
provisioning mode (both removed when the kiosk stops, and the page says so), and replays of the
faces94 people from the datasets folder as sources. Like Jupyter Server it binds 127.0.0.1 unless
told otherwise, and warns loudly when told.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import socket
import sys
import tempfile
from pathlib import Path

from latticelock.kernels.params import DEFAULT_SET as DEFAULT_PARAMETER_SET
from latticelock.tools import flags
from latticelock.tools.errors import ToolsError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
REPLAY_PEOPLE = "faces94_subset"
REPLAY_ENROL_FRAMES = 5


def register(commands) -> None:
    serve = commands.add_parser(
        "serve", help="serve the operator's web app (sign in, enrol, users, test unlock) on this machine",
        description="Serve the kiosk's web app: the operator signs in with the device passcode, enrols users with "
                    "a live preview, lists, re-enrols and deletes them, and runs test unlocks.")
    serve.add_argument("--source", action="append", metavar="URI",
                       help="a frame source the operator may pick; repeat for several: v4l2:///dev/video0, csi://0, "
                            "file://clip.mp4, dir://folder[?start=I&count=N] (default: replays of the faces94 people "
                            "in the datasets folder)")
    serve.add_argument("--mcu", help="microcontroller URL: /dev/ttyACM0, socket://HOST:PORT, sim://STATE_DIR?provisioning=1 "
                                     "(default: a simulated one in provisioning mode, in a temporary folder)")
    serve.add_argument("--store", help="store directory (default: a temporary store, removed when the kiosk stops)")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only; anything else is reachable "
                            "from the network)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    serve.add_argument("--frames", type=int, default=5, help="good frames per enrolment (default 5)")
    serve.add_argument("--parameter-set", default=DEFAULT_PARAMETER_SET,
                       help=f"L2FE-Hash parameter set of new records (default {DEFAULT_PARAMETER_SET})")
    serve.add_argument("--input-rate", type=float,
                       help="frames per second (cameras: requested; replays: pacing, so the preview plays like a camera; "
                            "default: as fast as processed)")
    flags.threads(serve)
    flags.decoder_backend(serve)
    serve.set_defaults(func=_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or one clear error: done first, so a busy port costs no model loading."""
    if not 0 <= port <= 65535:
        raise ToolsError(f"--port must be in 0..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, socket.gaierror) as exc:
        raise ToolsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now: a browser that connects while the models load waits instead of being refused.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ToolsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def replay_sources():
    """Two replays per faces94 person (its first images to enrol, the others to test unlocks), or ToolsError."""
    from latticelock.device.kiosk.station import SourceChoice
    from latticelock.tools.datasets import find_datasets

    root = find_datasets()
    people = root / REPLAY_PEOPLE if root is not None else None
    if people is None or not people.is_dir():
        raise ToolsError("no frame source: give --source URI (a camera such as v4l2:///dev/video0, or a replay "
                         f"dir://FOLDER); the default faces94 replays were not found ({REPLAY_PEOPLE} in the datasets "
                         "folder: $LATTICELOCK_DATASETS or ../shared/datasets)")
    choices = []
    for person in sorted(p for p in people.iterdir() if p.is_dir()):
        n = REPLAY_ENROL_FRAMES
        choices.append(SourceChoice(f"{person.name}: first {n} images (replay)", f"dir://{person}?count={n}"))
        choices.append(SourceChoice(f"{person.name}: the other images (replay)", f"dir://{person}?start={n}"))
    return choices


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from latticelock.device.kiosk.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise ToolsError(f"the kiosk needs its web framework ({exc.name} is not installed): "
                         "pip install 'latticelock[kiosk]'") from None
    from latticelock.device.enrol import EnrolConfig
    from latticelock.device.errors import KioskError
    from latticelock.device.hardened import reconcile
    from latticelock.device.kiosk.chip import Chip
    from latticelock.device.kiosk.station import Kiosk, SourceChoice
    from latticelock.device.sources import SourceOptions
    from latticelock.device.store import FlashStore
    from latticelock.models.pipeline import FacePipeline

    sources = [SourceChoice(uri, uri) for uri in args.source] if args.source else replay_sources()
    enrol_config = EnrolConfig(frames=args.frames)
    source_options = SourceOptions(fps=args.input_rate)
    sock = listen(args.host, args.port)
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)
        scratch: Path | None = None
        if args.store is None or args.mcu is None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="latticelock-kiosk-")))
        store = FlashStore(Path(args.store).expanduser() if args.store else scratch / "store", create=True)
        chip = Chip(args.mcu or f"sim://{scratch / 'mcu'}?provisioning=1")
        stack.callback(chip.close)
        temporary = [what for what, given in (("store", args.store), ("simulated microcontroller", args.mcu)) if not given]
        note = (f"Temporary {' and '.join(temporary)} in {scratch}: removed when the kiosk stops "
                "(give --store DIR and --mcu URL to keep users).") if temporary else ""
        kiosk = Kiosk(store, chip, sources, lambda: FacePipeline(threads=args.threads), parameter_set=args.parameter_set,
                      enrol_config=enrol_config, source_options=source_options,
                      recipe_options={"backend": args.decoder_backend or "auto"}, store_note=note)
        print("loading the face models...", flush=True)
        kiosk.pipeline()
        try:
            with chip.use() as client:
                for line in reconcile(store, client):
                    print(f"reconciled: {line}", flush=True)
        except KioskError as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)
        loopback = is_loopback(args.host)
        app = create_app(kiosk, allowed_hosts=LOOPBACK_HOSTS if loopback else ["*"])
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        if note:
            print(note, flush=True)
        if not loopback:
            print(f"WARNING: the kiosk listens on {args.host}, reachable from the network, over plain HTTP: the "
                  "passcode, the user list and the live preview of faces can be seen by anyone on the path. "
                  "Serve it on 127.0.0.1 unless this network is the kiosk's own.", file=sys.stderr, flush=True)
        print(f"LatticeLock kiosk at http://{shown}:{port}/ (store {store.path}, {chip.description}); "
              "sign in with the device passcode; Ctrl-C stops it", flush=True)
        # A preview stream left open must not hold the shutdown (and the temporary store) for long.
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                               timeout_graceful_shutdown=5))
        # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again: by default the
        # process would die there (or unwind as an interruption). Exiting instead unwinds the temporary store.
        previous = {signum: signal.signal(signum, _exit) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            print("kiosk stopped" + (f"; removing {scratch}" if scratch else ""), flush=True)
    return 0


def _exit(signum, frame) -> None:
    raise SystemExit(0)
