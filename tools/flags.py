"""Command-line flags that more than one command takes, defined once with one name per concept.

Choices and defaults come from the modules that own them (the decoder backends from the kernels, the
inference backends from models), so a new backend appears in every command at once.

- `--json OUT`: also write the command's result as JSON (checked before any work starts, written
  atomically, so a missing folder is a clear error up front and never loses a finished result).
- `--decoder-backend`: lattice decoders (auto, cpu, gpu); `--inference-backend`: MTCNN and FaceNet
  (onnxruntime, tensorrt); `--threads`: inference threads; `--datasets`: the face datasets folder;
  `--embeddings`: a file written by `latticelock eval embed`; `--probe-embeddings`: the frames' embeddings
  of the same images, beside templates from `--embeddings`; `--pairs`: an LFW pairs file; `--sets`:
  L2FE-Hash parameter sets.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from latticelock.tools.errors import ToolsError


def json_output(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", type=Path, metavar="OUT", help=f"also write {what} as JSON")


def check_json_target(path: Path | None) -> None:
    """Fail before the work, not after it, when the JSON could not be written."""
    if path is None:
        return
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise ToolsError(f"--json {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ToolsError(f"--json {path} is a folder; give a file name")


def check_json_spares_the_files(args: argparse.Namespace) -> None:
    """The JSON must not replace a file the command reads or writes (an --out, --embeddings, ...)."""
    target = getattr(args, "json", None)
    if target is None:
        return
    target = Path(target).expanduser().resolve()
    for name, value in vars(args).items():
        for path in value if isinstance(value, list) else [value]:
            if name != "json" and isinstance(path, Path) and path.expanduser().resolve() == target:
                raise ToolsError(f"--json {args.json} would replace the file given as {_flag(name)}; write the JSON elsewhere")


def _flag(dest: str) -> str:
    return dest.upper() if dest in ("dataset",) else f"--{dest.replace('_', '-')}"


def write_json(path: Path | None, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically (nothing when `path` is None)."""
    if path is None:
        return
    path = Path(path).expanduser()
    check_json_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decoder_backend(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    from latticelock.kernels.recipe import DECODER_BACKENDS

    parser.add_argument("--decoder-backend", choices=DECODER_BACKENDS, default=default,
                        help=f"lattice decoders: {', '.join(DECODER_BACKENDS)} (default {default or 'auto'}; all give the same results)")


def inference_backend(parser: argparse.ArgumentParser, default: str | None = "onnxruntime") -> None:
    from latticelock.models.backends import BACKENDS

    parser.add_argument("--inference-backend", choices=BACKENDS, default=default,
                        help=f"MTCNN and FaceNet inference: {', '.join(BACKENDS)} (default {default or 'onnxruntime'})")


def threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")


def datasets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", type=Path, metavar="DIR",
                        help="face datasets folder (default: $LATTICELOCK_DATASETS, else ../shared/datasets beside the checkout)")


def embeddings(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--embeddings", type=Path, required=required, metavar="FILE.npz",
                        help="embeddings written by `latticelock eval embed`")


def probe_embeddings(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--probe-embeddings", type=Path, metavar="FILE.npz",
                        help=f"{what} from this file (the same images: e.g. `eval embed`'s default, one pass as the unlock "
                             "loop embeds frames, against --embeddings from `eval embed --mirror-average`, as enrolment "
                             "builds templates)")


def pairs(parser: argparse.ArgumentParser, help_text: str = "LFW pairs file (lfw_pairs.txt, View 2)") -> None:
    parser.add_argument("--pairs", type=Path, required=True, metavar="FILE", help=help_text)


def parameter_sets(parser: argparse.ArgumentParser) -> None:
    from latticelock.kernels.params import PARAMETER_SETS

    parser.add_argument("--sets", nargs="+", choices=PARAMETER_SETS, default=list(PARAMETER_SETS), metavar="SET",
                        help=f"L2FE-Hash parameter sets: {', '.join(PARAMETER_SETS)} (default: all)")
