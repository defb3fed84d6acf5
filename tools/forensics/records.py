"""What a thief sees in one stolen record, with no secret: scheme, parameter set, field sizes."""

from __future__ import annotations

from dataclasses import dataclass

# Schemes whose record alone yields the face (directly, or up to a codeword / a known linear map).
FACE_LEAKING_SCHEMES = ("unprotected", "mrp", "facial-fe")


@dataclass(frozen=True)
class RecordInfo:
    scheme: str
    parameter_set: str
    fields: dict[str, str]
    leaks_face: bool


def describe_record(record) -> RecordInfo:
    described = record.describe()
    fields = {}
    for name, info in described["fields"].items():
        if info["kind"] == "bytes":
            fields[name] = f"{info['bytes']} B"
        else:
            shape = "x".join(str(d) for d in info["shape"])
            fields[name] = f"{info['dtype'].lstrip('<|')}[{shape}]"
    return RecordInfo(
        scheme=described["scheme"],
        parameter_set=described["parameter_set"],
        fields=fields,
        leaks_face=described["scheme"] in FACE_LEAKING_SCHEMES,
    )
