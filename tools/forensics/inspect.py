"""Read a stolen image the way a thief would: every user record, its scheme, parameter set and
field sizes, with no secret at all. Damaged entries are reported, never fatal."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from latticelock.tools.forensics.image import DumpImage, read_image, unpack
from latticelock.tools.forensics.records import describe_record


@dataclass(frozen=True)
class InspectedUser:
    user: str
    generation: int  # the store keeps it in the clear; a hardened record is presented to the chip under it
    scheme: str
    parameter_set: str
    record_bytes: int
    fields: dict[str, str]  # field name -> shape/size, e.g. "int64[48]" or "32 B"
    leaks_face: bool  # the project's attacks recover the face from the record alone (kernels.families)
    why: str
    file: str
    record: object = field(repr=False, compare=False)


@dataclass(frozen=True)
class InspectReport:
    image: str
    files: int
    image_checksum_ok: bool
    users: list[InspectedUser]
    corrupt: list[tuple[str, str]]  # (path in the image, why)
    other_files: list[str]


def inspect_image(path: str | Path) -> InspectReport:
    image = read_image(path)
    return inspect_dump(image, str(path))


def inspect_dump(image: DumpImage, name: str) -> InspectReport:
    from latticelock.device.store import scan_store
    from latticelock.kernels.errors import KernelsError

    corrupt = [(e.path, "image checksum of this file failed (damaged copy)") for e in image.entries if not e.intact]
    users: list[InspectedUser] = []
    with tempfile.TemporaryDirectory(prefix="latticelock-forensics-") as tmp:
        unpack(image, tmp)
        root = Path(tmp)
        try:
            scan = scan_store(root)
        except Exception as exc:  # the store's own reader refuses the whole store: say why, keep going
            corrupt.append(("STORE", f"store reader refused the image: {exc}"))
            scan = None
        seen = set()
        if scan is not None:
            for entry in scan.corrupt:
                rel = Path(entry.path).relative_to(root).as_posix()
                corrupt.append((rel, entry.reason.replace(f"{root}/", "")))
                seen.add(rel)
            for user in scan.users:
                rel = Path(user.path).relative_to(root).as_posix()
                seen.add(rel)
                try:
                    record = user.record()
                    info = describe_record(record)
                except KernelsError as exc:
                    corrupt.append((rel, f"user {user.name!r}: record rejected: {exc}"))
                    continue
                users.append(
                    InspectedUser(
                        user=user.name,
                        generation=user.generation,
                        scheme=info.scheme,
                        parameter_set=info.parameter_set,
                        record_bytes=len(user.record_bytes),
                        fields=info.fields,
                        leaks_face=info.leaks_face,
                        why=info.why,
                        file=rel,
                        record=record,
                    )
                )
    damaged = {p for p, _ in corrupt}
    other = [e.path for e in image.entries if e.path not in seen and e.path not in damaged]
    return InspectReport(name, len(image.entries), image.image_checksum_ok, users, corrupt, other)


def format_report(report: InspectReport) -> str:
    lines = [
        f"image {report.image}: {report.files} files, image checksum {'ok' if report.image_checksum_ok else 'FAILED'}",
        f"{'user':<24} {'scheme':<20} {'parameter set':<22} {'bytes':>7}  fields",
    ]
    for u in report.users:
        fields = ", ".join(f"{k}={v}" for k, v in u.fields.items())
        lines.append(f"{u.user:<24} {u.scheme:<20} {u.parameter_set:<22} {u.record_bytes:>7}  {fields}")
    lines.append(f"{len(report.users)} records parsed; {sum(u.leaks_face for u in report.users)} leak the face to a flash thief")
    for scheme, why in sorted({(u.scheme, u.why) for u in report.users if u.leaks_face}):
        lines.append(f"  {scheme}: {why}")
    for path, why in report.corrupt:
        lines.append(f"corrupt: {path}: {why}")
    if report.other_files:
        lines.append("other files: " + ", ".join(report.other_files))
    return "\n".join(lines)
