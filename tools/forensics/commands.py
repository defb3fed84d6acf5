"""`latticelock forensics ...`: steal a device store, inspect the image, run the attack report."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_datasets() -> Path:
    return Path(os.environ.get("LATTICELOCK_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def _steal(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.image import steal

    image = steal(args.store, args.out)
    size = sum(len(e.data) for e in image.entries)
    print(f"stole {len(image.entries)} files ({size} bytes) from {args.store} into {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.inspect import format_report, inspect_image

    report = inspect_image(args.image)
    print(format_report(report))
    if args.json:
        out = {
            "image": report.image,
            "files": report.files,
            "image_checksum_ok": report.image_checksum_ok,
            "users": [{"user": u.user, "scheme": u.scheme, "parameter_set": u.parameter_set, "record_bytes": u.record_bytes,
                       "fields": u.fields, "leaks_face": u.leaks_face, "file": u.file} for u in report.users],
            "corrupt": [{"path": p, "reason": why} for p, why in report.corrupt],
            "other_files": report.other_files,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _embeddings_for(args: argparse.Namespace) -> Path:
    """--embeddings, or embed DATASETS/lfw once with `latticelock eval embed` (resumable) into the cache."""
    if args.embeddings is not None:
        return args.embeddings
    from latticelock.tools.cli import build_parser
    from latticelock.tools.errors import ToolsError

    lfw = args.datasets / "lfw"
    if not lfw.is_dir():
        raise ToolsError(f"no LFW folder at {lfw}; pass --datasets DIR or --embeddings FILE")
    cache = Path(os.environ.get("LATTICELOCK_CACHE", Path.home() / ".cache" / "latticelock")) / "embeddings"
    out = cache / "lfw.npz"
    if not out.exists():
        embed = build_parser().parse_args(["eval", "embed", str(lfw), "--out", str(out), "--min-face-size", "40"])
        embed.func(embed)
    return out


def _report(args: argparse.Namespace) -> int:
    from latticelock.tools.forensics.protocol import load_embeddings, pair_identities
    from latticelock.tools.forensics.report import ReportConfig, format_report, run_report, write_json, write_plots

    import hashlib

    source = _embeddings_for(args)
    faces = load_embeddings(source)
    pairs = args.pairs if args.pairs is not None else args.datasets / "lfw_pairs.txt"
    eligible = pair_identities(pairs) if pairs.exists() else None
    config = ReportConfig(
        schemes=tuple(args.schemes),
        max_victims=args.max_victims,
        attack_victims=args.attack_victims,
        train_faces=args.train_faces,
        guesses=args.guesses,
        repeats=args.repeats,
        kmeans=args.kmeans,
        target_fpr=args.target_fpr,
        model=args.model,
        lattice_budget=args.lattice_budget,
        lattice_radius=args.lattice_radius,
        lattice_bkz=args.lattice_bkz,
        device_kdf_victims=args.device_kdf_victims,
        backend=args.backend,
        seed=args.seed,
    )
    report = run_report(faces, config, eligible, progress=not args.quiet)
    report.data["embeddings"] = str(source)
    report.data["embeddings_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
    if args.plots:
        for path in write_plots(report, args.plots):
            print(f"plot: {path}")
    return 0


def register(commands) -> None:
    from latticelock.tools.forensics.report import DEFAULT_SCHEMES, ReportConfig

    steal = commands.add_parser("steal", help="image a device store as a thief reads it (every file, no secret)")
    steal.add_argument("--store", type=Path, required=True, metavar="DIR", help="the device's store directory")
    steal.add_argument("--out", type=Path, required=True, metavar="IMAGE", help="where to write the image")
    steal.set_defaults(func=_steal)

    inspect = commands.add_parser("inspect", help="list every record of a stolen image: scheme, parameter set, sizes")
    inspect.add_argument("image", type=Path, metavar="IMAGE")
    inspect.add_argument("--json", type=Path, metavar="OUT", help="also write the listing as JSON")
    inspect.set_defaults(func=_inspect)

    d = ReportConfig()
    report = commands.add_parser(
        "report",
        help="PIPE, dictionary, lattice and algebraic attacks on identity-disjoint LFW victims",
        description="Every attack against every scheme; tables shaped like the paper's Tables III, IV and X.",
    )
    report.add_argument("--embeddings", type=Path, metavar="FILE", help="embeddings file from `latticelock eval embed` (default: embed DIR/lfw once, cached)")
    report.add_argument("--datasets", type=Path, default=_default_datasets(), metavar="DIR",
                        help="datasets folder holding lfw/ and lfw_pairs.txt (default: $LATTICELOCK_DATASETS or ../shared/datasets)")
    report.add_argument("--pairs", type=Path, help="LFW pairs file whose identities victims are drawn from (default: DIR/lfw_pairs.txt)")
    report.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES), metavar="NAME")
    report.add_argument("--max-victims", type=int, default=d.max_victims, help="cap on victims (default: all eligible)")
    report.add_argument("--attack-victims", type=int, default=d.attack_victims,
                        help=f"victims for the dictionary and lattice attacks (default {d.attack_victims})")
    report.add_argument("--train-faces", type=int, default=d.train_faces, help=f"public faces PIPE trains on (default {d.train_faces})")
    report.add_argument("--guesses", type=int, default=d.guesses, help=f"random-guess and dictionary size (default {d.guesses})")
    report.add_argument("--repeats", type=int, default=d.repeats, help=f"random-guess repeats (default {d.repeats})")
    report.add_argument("--kmeans", type=int, default=d.kmeans, help=f"k-means centroids (default {d.kmeans})")
    report.add_argument("--target-fpr", type=float, default=d.target_fpr, help=f"FPR that sets tau (default {d.target_fpr})")
    report.add_argument("--model", choices=("ridge", "mlp"), default=d.model, help="PIPE step-2 inverse (default ridge)")
    report.add_argument("--lattice-budget", type=int, default=d.lattice_budget,
                        help=f"verifier evaluations per victim (default {d.lattice_budget})")
    report.add_argument("--lattice-radius", type=float, default=d.lattice_radius,
                        help=f"enumeration radius in decoding radii (default {d.lattice_radius})")
    report.add_argument("--lattice-bkz", type=int, default=d.lattice_bkz, help="BKZ block size for the attack (default: the device's)")
    report.add_argument("--device-kdf-victims", type=int, default=d.device_kdf_victims,
                        help=f"victims attacked with records at the device's Argon2id cost (default {d.device_kdf_victims})")
    report.add_argument("--backend", choices=("auto", "cpu", "gpu"), default=d.backend, help="decoder backend")
    report.add_argument("--seed", type=int, default=d.seed)
    report.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON (list `rows`)")
    report.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots of ASR against guesses")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=_report)
