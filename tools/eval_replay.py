"""`latticelock eval replay`: the whole device against look-alikes, on replayed photos of a dataset folder.

Every identity of the folder is enrolled into one store from its first `--enrol` images (the real
MTCNN + FaceNet, the real enrolment with its collision check), in hardened mode with a simulated
microcontroller in this process, or in plain mode. Then every identity replays every `--slice`-frame
slice of its remaining images (starts 0, slice, 2 x slice, ...) as one unlock attempt through the
device's own loop and default policy. An attempt accepted as another user is a false accept (the
look-alike attack of issue 10); one rejected or refused is a false reject for a genuine identity.
The chip's daily budget is lifted for the run (a device never sees this many attempts in a day);
every other limit is the device's.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from latticelock.tools import flags

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
PASSCODE = "replay-passcode"


@dataclass
class ReplayResult:
    dataset: str
    mode: str
    parameter_set: str
    enrolled: list[str]
    refused_enrolments: dict[str, str]
    attempts: int
    genuine_attempts: int
    false_rejects: int
    impostor_attempts: int
    false_accepts: int
    accepted_as_other: list[dict]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run_replay(dataset: Path, mode: str, parameter_set: str, enrol_images: int = 5, slice_size: int = 3,
               threads: int | None = None, progress: bool = True) -> ReplayResult:
    from tqdm import tqdm

    from latticelock.device.enrol import EnrolConfig, capture_good_frames, make_template, store_template
    from latticelock.device.errors import DeviceError
    from latticelock.device.loop import Authenticator
    from latticelock.device.sources import open_source
    from latticelock.device.store import FlashStore
    from latticelock.firmware_bridge.errors import BridgeError
    from latticelock.firmware_bridge.simulator import embedded
    from latticelock.models.pipeline import FacePipeline
    from latticelock.tools.errors import ToolsError

    people = sorted(p for p in dataset.iterdir() if p.is_dir() and len(_images(p)) > enrol_images)
    if len(people) < 2:
        raise ToolsError(f"{dataset}: need at least two identity folders with more than {enrol_images} images")
    pipeline = FacePipeline(threads=threads)
    with tempfile.TemporaryDirectory(prefix="latticelock-replay-") as tmp:
        store = FlashStore(Path(tmp) / "store", mode=mode)
        chip = embedded(Path(tmp) / "mcu", provisioning=True, daily_attempts=10_000) if mode == "hardened" else None
        mcu = chip.__enter__()[0] if chip else None
        try:
            if mcu is not None:
                mcu.set_passcode(PASSCODE)
            enrolled, refused = [], {}
            for person in tqdm(people, desc="enrol", unit="person", disable=not progress):
                try:
                    with open_source(f"dir://{person}?count={enrol_images}") as source:
                        capture = capture_good_frames(source, pipeline, EnrolConfig(frames=enrol_images, max_spread=2.0))
                    store_template(person.name, make_template(capture.embeddings), store, parameter_set, mcu=mcu)
                    enrolled.append(person.name)
                except DeviceError as exc:
                    refused[person.name] = str(exc)
            auth = Authenticator(store, pipeline, mcu=mcu)
            result = ReplayResult(dataset.name, mode, parameter_set, enrolled, refused, 0, 0, 0, 0, 0, [])
            jobs = [(p, start) for p in people for start in range(0, len(_images(p)) - enrol_images, slice_size)]
            for person, start in tqdm(jobs, desc=f"replay {mode}", unit="attempt", disable=not progress):
                with open_source(f"dir://{person}?start={enrol_images + start}&count={slice_size}") as source:
                    try:
                        outcome = auth.unlock(source)
                        user = outcome.user if outcome.accepted else None
                    except BridgeError:
                        user = None  # refused by the chip (never expected here): not an acceptance
                result.attempts += 1
                if person.name in enrolled:
                    result.genuine_attempts += 1
                    result.false_rejects += user != person.name
                result.impostor_attempts += len(enrolled) - (person.name in enrolled)
                if user is not None and user != person.name:
                    result.false_accepts += 1
                    result.accepted_as_other.append({"person": person.name, "start": start, "accepted_as": user})
            return result
        finally:
            if chip:
                chip.__exit__(None, None, None)


def format_result(r: ReplayResult) -> str:
    lines = [f"{r.dataset}, {r.mode}, {r.parameter_set}: {len(r.enrolled)} users enrolled, {r.attempts} attempts"]
    for name, why in r.refused_enrolments.items():
        lines.append(f"  enrolment of {name} refused: {why}")
    lines.append(f"  genuine: {r.false_rejects} of {r.genuine_attempts} attempts rejected")
    lines.append(f"  look-alikes: {r.false_accepts} attempts accepted as another user "
                 f"({r.impostor_attempts} impostor comparisons: each attempt against every other enrolled user)")
    for case in r.accepted_as_other:
        lines.append(f"    {case['person']} (slice at {case['start']}) accepted as {case['accepted_as']}")
    return "\n".join(lines)


def register(commands) -> None:
    from latticelock.kernels.params import DEFAULT_SET

    parser = commands.add_parser("replay", help="the whole device against look-alikes, on replayed photos",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", help="identity folders of photos (default: faces94_subset in the datasets folder)")
    flags.datasets(parser)
    parser.add_argument("--mode", choices=("hardened", "plain", "both"), default="both")
    parser.add_argument("--parameter-set", default=DEFAULT_SET, help=f"operating point (default {DEFAULT_SET})")
    parser.add_argument("--enrol", type=int, default=5, help="images per enrolment (default 5)")
    parser.add_argument("--slice", type=int, default=3, help="frames per attempt (default 3)")
    flags.threads(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    flags.json_output(parser, "the results")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from latticelock.tools.datasets import dataset_path
    from latticelock.tools.errors import ToolsError

    flags.check_json_target(args.json)
    if args.enrol < 1 or args.slice < 1:
        raise ToolsError("--enrol and --slice must be at least 1")
    dataset = args.dataset or dataset_path("faces94_subset", args.datasets)
    if not dataset.is_dir():
        raise ToolsError(f"{dataset} is not a folder of identity folders")
    modes = ("hardened", "plain") if args.mode == "both" else (args.mode,)
    results = [run_replay(dataset, mode, args.parameter_set, args.enrol, args.slice, args.threads, not args.quiet) for mode in modes]
    for r in results:
        print(format_result(r))
    flags.write_json(args.json, [asdict(r) for r in results])
    return 0 if all(r.false_accepts == 0 for r in results) else 1
