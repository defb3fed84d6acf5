"""The `latticelock` command: a thin argparse tree over the library modules.

Each group lists the modules that register its subcommands; a module only parses options and
calls library code (pip-tools style), and library code never exits. Heavy imports happen inside
the handlers so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from latticelock.tools import flags

GROUPS: dict[str, tuple[str, list[str]]] = {
    "device": (
        "on-device runtime: enrol, unlock, users, wallet, firmware bridge",
        ["latticelock.tools.device_commands"],
    ),
    "kiosk": (
        "provisioning at a kiosk: the operator's local web app",
        ["latticelock.tools.kiosk_commands"],
    ),
    "models": (
        "build, verify and inspect the MTCNN and FaceNet ONNX models",
        ["latticelock.tools.models_commands"],
    ),
    "eval": (
        "measure the pipeline and the protection schemes on real faces",
        [
            "latticelock.tools.eval_embed",
            "latticelock.tools.eval_lfw",
            "latticelock.tools.eval_schemes",
            "latticelock.tools.eval_policy",
            "latticelock.tools.eval_calibrate",
            "latticelock.tools.eval_replay",
            "latticelock.tools.eval_liveness",
        ],
    ),
    "forensics": (
        "stolen-device forensics: steal, inspect, attack, report",
        ["latticelock.tools.forensics.commands"],
    ),
    "bench": (
        "benchmarks that print medians and ratios",
        [
            "latticelock.tools.bench_pipeline",
            "latticelock.tools.bench_fe",
            "latticelock.tools.bench_decode",
            "latticelock.tools.bench_device",
            "latticelock.tools.bench_mcu",
        ],
    ),
}


def _error_types() -> tuple[type[BaseException], ...]:
    from latticelock.device.errors import DeviceError
    from latticelock.firmware_bridge.errors import BridgeError
    from latticelock.kernels.errors import KernelsError
    from latticelock.models.errors import ModelsError
    from latticelock.tools.errors import ToolsError

    return (DeviceError, BridgeError, KernelsError, ModelsError, ToolsError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latticelock",
        description="Face authenticator that stores only L2FE-Hash helper data, and its forensics tools.",
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for name, (help_text, modules) in GROUPS.items():
        group = groups.add_parser(name, help=help_text, description=help_text)
        commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
        for module in modules:
            importlib.import_module(module).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        flags.check_json_spares_the_files(args)
        return int(args.func(args) or 0)
    except _error_types() as exc:
        print(f"latticelock: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latticelock: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
