"""What a thief sees in one stolen record, with no secret: scheme, parameter set, field sizes, and
whether the project's attacks recover the face from it (`latticelock.kernels.families`)."""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class RecordInfo:
    scheme: str
    parameter_set: str
    fields: dict[str, str]
    leaks_face: bool
    why: str  # the measured reason, from the scheme's family


def describe_record(record) -> RecordInfo:
    from latticelock.kernels.families import family

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
        leaks_face=family(described["scheme"]).flash_thief_gets_face,
        why=family(described["scheme"]).why,
    )
