"""`latticelock forensics ...`: steal a device store, inspect the image, build the face generator,
run the attack report, and steal a whole simulated fleet."""

from __future__ import annotations

import argparse
from pathlib import Path

from latticelock.tools import flags
from latticelock.tools.errors import ToolsError


def _command_line(args: argparse.Namespace) -> str:
    """The options a command ran with, as a command line (the report's provenance)."""
    import shlex

    words = ["latticelock", args.group, args.command]
    for key, value in sorted(vars(args).items()):
        if key in ("func", "group", "command") or value is None or value is False:
            continue
        option = "--" + key.replace("_", "-")
        if value is True:
            words.append(option)
        elif isinstance(value, list):
            words += [option, *map(str, value)]
        else:
            words += [option, str(value)]
    return shlex.join(words)


def _steal(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.image import steal

    image = steal(args.store, args.out)
    size = sum(len(e.data) for e in image.entries)
    print(f"stole {len(image.entries)} files ({size} bytes) from {args.store} into {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.inspect import format_report, inspect_image

    flags.check_json_target(args.json)
    report = inspect_image(args.image)
    print(format_report(report))
    flags.write_json(args.json, {
        "image": report.image,
        "files": report.files,
        "image_checksum_ok": report.image_checksum_ok,
        "users": [{"user": u.user, "generation": u.generation, "scheme": u.scheme, "parameter_set": u.parameter_set,
                   "record_bytes": u.record_bytes, "fields": u.fields, "leaks_face": u.leaks_face, "why": u.why, "file": u.file} for u in report.users],
        "corrupt": [{"path": p, "reason": why} for p, why in report.corrupt],
        "other_files": report.other_files,
    })
    return 0


def _embeddings(args: argparse.Namespace):
    """--embeddings, or DATASETS/lfw embedded once with `latticelock eval embed --mirror-average` (resumable) into the cache."""
    from latticelock.tools.datasets import dataset_path
    from latticelock.tools.embeddings import load_embeddings

    if args.embeddings is not None:
        return load_embeddings(args.embeddings)
    from latticelock.models.assets import cache_dir
    from latticelock.tools.cli import build_parser

    out = cache_dir().parent / "embeddings" / "lfw.npz"  # $LATTICELOCK_CACHE/embeddings, beside models/
    if out.exists():
        cached = load_embeddings(out)
        if not cached.config.get("flip_average", True):
            raise ToolsError(f"{out} holds one-pass embeddings, not the mirror-averaged templates a thief steals; "
                             "delete it to embed LFW again, or give --embeddings")
        return cached
    # Mirror-averaged, as enrolment builds the templates that a thief steals.
    embed = build_parser().parse_args(["eval", "embed", str(dataset_path("lfw", args.datasets)), "--out", str(out),
                                       "--mirror-average"])
    embed.func(embed)
    return load_embeddings(out)


def _eligible(args: argparse.Namespace) -> set[str] | None:
    """Victims come from the identities of the pairs file (--pairs, else DATASETS/lfw_pairs.txt) where it
    exists, else from every identity with two images or more (the report's data line says which)."""
    from latticelock.tools.datasets import find_datasets
    from latticelock.tools.forensics.protocol import pair_identities

    found = find_datasets(args.datasets)
    pairs = args.pairs if args.pairs is not None else (found / "lfw_pairs.txt" if found else None)
    return pair_identities(pairs) if pairs is not None and pairs.exists() else None


def _lfw_folder(args: argparse.Namespace, faces) -> Path | None:
    """The folder the embeddings were made from (their own record of it, else DATASETS/lfw), if present."""
    from latticelock.tools.datasets import find_datasets

    recorded = faces.config.get("dataset")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    found = find_datasets(args.datasets)
    return found / "lfw" if found and (found / "lfw").is_dir() else None


def _generator(args: argparse.Namespace) -> int:
    import numpy as np

    from latticelock.models.assets import cache_dir
    from latticelock.tools.forensics import generator
    from latticelock.tools.forensics.crops import face_crops
    from latticelock.tools.forensics.protocol import split_identities

    net = generator.require_torch()
    faces = _embeddings(args)
    folder = _lfw_folder(args, faces)
    if folder is None:
        raise ToolsError("the generator trains on the public faces' images: pass --datasets DIR holding lfw/")
    # the report's split with no cap on victims: every identity that may ever be a victim is left out
    split = split_identities(faces, 0.5, None, _eligible(args), args.seed)
    victims = set(split.victim_labels.tolist())
    public = [str(f) for f, label in zip(faces.files, faces.labels) if label not in victims]
    crops = face_crops(folder, public, faces.config, net.SIZE, cache_dir() / f"generator-crops-{net.SIZE}.npz",
                       progress=not args.quiet)
    files = [f for f in public if f in crops]
    rows = faces.index()
    built = generator.build(
        faces.embeddings[[rows[f] for f in files]], np.stack([crops[f] for f in files]),
        np.array([f.split("/")[0] for f in files]), {"path": str(faces.path), "sha256": faces.sha256, "command": _command_line(args)},
        args.out or generator.default_path(), threads=args.threads, seed=args.seed,
    )
    print(f"face generator: {built.describe()}")
    print(f"written to {args.out or generator.default_path()} (manifest beside it)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.report import ReportConfig, provenance, run_report, write_json
    from latticelock.tools.forensics.tables import format_report

    flags.check_json_target(args.json)
    if args.html is not None and not args.html.expanduser().parent.is_dir():
        raise ToolsError(f"--html {args.html}: folder {args.html.expanduser().parent} does not exist")
    fleet = _read_fleet(args.fleet) if args.fleet else None
    attack, skipped = None, None
    if not args.no_image:
        from latticelock.tools.forensics import generator
        from latticelock.tools.forensics.pipe_image import ImageAttack

        try:
            attack = ImageAttack(generator.load(args.generator), threads=args.threads)
        except ToolsError as exc:
            if args.generator is not None:  # asked for by name: its absence is an error
                raise
            skipped = f"image-space PIPE not run: {exc}"
    faces = _embeddings(args)
    config = ReportConfig(
        schemes=tuple(args.schemes), max_victims=args.max_victims, attack_victims=args.attack_victims,
        train_faces=args.train_faces, guesses=args.guesses, repeats=args.repeats, kmeans=args.kmeans,
        target_fpr=args.target_fpr, model=args.model, lattice_budget=args.lattice_budget,
        lattice_radius=args.lattice_radius, lattice_bkz=args.lattice_bkz, device_kdf_victims=args.device_kdf_victims,
        image_victims=args.image_victims, grid_victims=args.grid_victims, hardened_victims=args.hardened_victims,
        hardened_set=args.hardened_set, backend=args.decoder_backend, seed=args.seed,
    )
    report = run_report(faces, config, _eligible(args), progress=not args.quiet, image_attack=attack,
                        dataset=_lfw_folder(args, faces))
    report.data["embeddings"] = str(faces.path)
    report.data["embeddings_sha256"] = faces.sha256
    report.provenance = provenance(_command_line(args))
    if attack is not None and "command" in attack.generator.manifest["training"]["embeddings"]:
        report.provenance["commands"].insert(0, attack.generator.manifest["training"]["embeddings"]["command"])
    report.fleet = fleet
    if skipped:
        report.notes.append(skipped)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
    if args.plots:
        from latticelock.tools.forensics.figures import write_plots

        for path in write_plots(report, args.plots):
            print(f"plot: {path}")
    if args.html:
        from latticelock.tools.forensics.html import write_html

        write_html(report, args.html)
        print(f"html: {args.html}")
    return 0


def _read_fleet(folder: Path) -> dict:
    """The summary of a finished `forensics fleet` results folder."""
    import json

    from latticelock.tools.forensics.fleet import done_devices, summarise

    try:
        plan = json.loads((Path(folder) / "fleet.json").read_text())
    except (OSError, ValueError) as exc:
        raise ToolsError(f"--fleet {folder}: not a fleet results folder ({exc})") from None
    results = list(done_devices(Path(folder)).values())
    if len(results) < plan["devices"]:
        raise ToolsError(f"--fleet {folder}: {len(results)} of {plan['devices']} devices done; rerun `forensics fleet` to finish")
    return summarise(results, plan)


def _fleet(args: argparse.Namespace) -> int:
    import numpy as np

    from latticelock.kernels.params import DEFAULT_SET
    from latticelock.tools.forensics.dictionary import kmeans_centroids
    from latticelock.tools.forensics.fleet import (FleetContext, check_plan, plan_fleet, run_fleet, summarise,
                                                   summary_table)
    from latticelock.tools.forensics.protocol import calibrate_tau, split_identities
    from latticelock.tools.forensics.tables import render_text
    from latticelock.tools.embeddings import normalise

    flags.check_json_target(args.json)
    faces = _embeddings(args)
    split = split_identities(faces, 0.5, None, _eligible(args), args.seed)
    tau = calibrate_tau(split.public, split.public_labels).tau
    pset = args.parameter_set or DEFAULT_SET
    specs = plan_fleet(args.devices, args.users, list(split.victim_labels), args.hardened_share, pset, args.seed)
    plan = {"devices": args.devices, "users": args.users, "hardened_share": args.hardened_share, "parameter_set": pset,
            "seed": args.seed, "fast_kdf": args.fast_kdf, "budget": args.budget, "tau": tau,
            "embeddings_sha256": faces.sha256}
    check_plan(args.out, plan)
    centres = np.concatenate([normalise(split.public.mean(0)[None, :]), kmeans_centroids(split.public, args.kmeans, args.seed)])
    index = {str(v): i for i, v in enumerate(split.victim_labels)}
    users = {u for s in specs for u in s.users}
    context = FleetContext({u: split.enrolled[index[u]] for u in users}, {u: split.other[index[u]] for u in users},
                           centres, tau, budget=args.budget, fast_kdf=args.fast_kdf, devices=args.out.resolve())
    results = run_fleet(specs, context, args.out, address=args.address, max_in_flight=args.max_in_flight,
                        progress=not args.quiet)
    summary = summarise(results, plan)
    print(render_text(summary_table(summary)))
    print(f"per-device results in {args.out}; add them to the report with `forensics report --fleet {args.out}`")
    flags.write_json(args.json, summary)
    return 0


def _data_flags(parser: argparse.ArgumentParser) -> None:
    flags.embeddings(parser, required=False)
    flags.datasets(parser)
    parser.add_argument("--pairs", type=Path, help="LFW pairs file whose identities victims are drawn from "
                                                   "(default: DATASETS/lfw_pairs.txt)")
    parser.add_argument("--seed", type=int, default=0, help="victim split and sampling seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def register(commands) -> None:
    from latticelock.tools.forensics.report import DEFAULT_SCHEMES, ReportConfig

    steal = commands.add_parser("steal", help="image a device store as a thief reads it (every file, no secret)")
    steal.add_argument("--store", type=Path, required=True, metavar="DIR", help="the device's store directory")
    steal.add_argument("--out", type=Path, required=True, metavar="IMAGE", help="where to write the image")
    steal.set_defaults(func=_steal)

    inspect = commands.add_parser("inspect", help="list every record of a stolen image: scheme, parameter set, sizes, face leak")
    inspect.add_argument("image", type=Path, metavar="IMAGE")
    flags.json_output(inspect, "the listing")
    inspect.set_defaults(func=_inspect)

    gen = commands.add_parser("generator", help="build the face generator (PIPE step 2 in image space) on public faces",
                              description="Trains on the public identities of the report's split (never a victim); "
                                          "weights and manifest go to the model cache. Needs the [forensics] extra.")
    _data_flags(gen)
    gen.add_argument("--out", type=Path, metavar="FILE.pt", help="weights file (default: in the model cache)")
    flags.threads(gen)
    gen.set_defaults(func=_generator)

    d = ReportConfig()
    report = commands.add_parser(
        "report",
        help="PIPE (embedding and image space), dictionary, lattice and algebraic attacks on identity-disjoint LFW victims",
        description="Every attack against every scheme; tables named after the paper's (III, IV, X, XII) or marked as ours.",
    )
    _data_flags(report)
    report.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES), metavar="NAME")
    report.add_argument("--max-victims", type=int, default=d.max_victims, help="cap on victims (default: all eligible)")
    report.add_argument("--attack-victims", type=int, default=d.attack_victims,
                        help=f"victims for the dictionary and lattice attacks (default {d.attack_victims})")
    report.add_argument("--image-victims", type=int, default=d.image_victims,
                        help=f"attack victims whose reconstructions are drawn and re-embedded (default {d.image_victims})")
    report.add_argument("--grid-victims", type=int, default=d.grid_victims, help=f"victims in each face grid (default {d.grid_victims})")
    report.add_argument("--train-faces", type=int, default=d.train_faces, help=f"public faces PIPE trains on (default {d.train_faces})")
    report.add_argument("--guesses", type=int, default=d.guesses, help=f"random-guess and dictionary size (default {d.guesses})")
    report.add_argument("--repeats", type=int, default=d.repeats, help=f"random-guess repeats (default {d.repeats})")
    report.add_argument("--kmeans", type=int, default=d.kmeans, help=f"k-means centroids (default {d.kmeans})")
    report.add_argument("--target-fpr", type=float, default=d.target_fpr, help=f"FPR that sets tau (default {d.target_fpr})")
    report.add_argument("--model", choices=("ridge", "mlp"), default=d.model, help="PIPE's embedding-space inverse (default ridge)")
    report.add_argument("--lattice-budget", type=int, default=d.lattice_budget,
                        help=f"verifier evaluations per victim (default {d.lattice_budget})")
    report.add_argument("--lattice-radius", type=float, default=d.lattice_radius,
                        help=f"enumeration radius in decoding radii (default {d.lattice_radius})")
    report.add_argument("--lattice-bkz", type=int, default=d.lattice_bkz, help="BKZ block size for the attack (default: the device's)")
    report.add_argument("--device-kdf-victims", type=int, default=d.device_kdf_victims,
                        help=f"victims attacked with records at the device's Argon2id cost (default {d.device_kdf_victims})")
    report.add_argument("--hardened-victims", type=int, default=d.hardened_victims,
                        help=f"attack victims also enrolled on simulated hardened devices, one each (default "
                             f"{d.hardened_victims}; 0: no hardened rows)")
    report.add_argument("--hardened-set", default=d.hardened_set,
                        help=f"parameter set of the hardened devices (default {d.hardened_set})")
    report.add_argument("--generator", type=Path, metavar="FILE.pt", help="face generator weights (default: the cached one)")
    report.add_argument("--no-image", action="store_true", help="skip the image-space attack (no PyTorch needed)")
    report.add_argument("--fleet", type=Path, metavar="DIR", help="add the summary of a finished `forensics fleet` folder")
    flags.decoder_backend(report)
    flags.threads(report)
    flags.json_output(report, "the report (rows, image_rows, accuracy, threat_models, ...)")
    report.add_argument("--plots", type=Path, metavar="DIR", help="write the ASR plots and face grids as PNG")
    report.add_argument("--html", type=Path, metavar="OUT.html", help="write the whole report as one self-contained page")
    report.set_defaults(func=_report)

    fleet = commands.add_parser("fleet", help="steal a simulated fleet and attack every device, one Ray task each",
                                description="Resumable: per-device results are written to --out as they finish, and a "
                                            "rerun skips them. Needs the [fleet] extra.")
    _data_flags(fleet)
    fleet.add_argument("--devices", type=int, required=True, metavar="N")
    fleet.add_argument("--users", type=int, required=True, metavar="K", help="users enrolled per device")
    fleet.add_argument("--hardened-share", type=float, default=0.2, help="share of hardened devices (default 0.2)")
    fleet.add_argument("--parameter-set", help="L2FE-Hash parameter set of the plain devices (default: the device's)")
    fleet.add_argument("--budget", type=int, default=100, help="verifier evaluations per record (default 100)")
    fleet.add_argument("--kmeans", type=int, default=16, help="k-means centroids the thief guesses after the mean face (default 16)")
    fleet.add_argument("--fast-kdf", action="store_true", help="records with the evaluation Argon2id cost (decisions unchanged)")
    fleet.add_argument("--out", type=Path, default=Path("fleet-results"), metavar="DIR",
                       help="per-device results and each device's folder (store, stolen image, hardened: the chip's "
                            "flash), resumable (default ./fleet-results)")
    fleet.add_argument("--address", help="join an existing Ray cluster (default: start a local Ray)")
    fleet.add_argument("--max-in-flight", type=int, default=2, help="device tasks running at once (default 2)")
    flags.json_output(fleet, "the fleet summary")
    fleet.set_defaults(func=_fleet)
