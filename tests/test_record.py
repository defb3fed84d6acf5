"""The record format: round trips, and every kind of damage gives a clear RecordError."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticelock.kernels.errors import KernelsError, RecordError
from latticelock.kernels.record import CHECKSUM_BYTES, FORMAT_VERSION, MAGIC, Record, parse_record


def sample_record() -> Record:
    return Record(
        "l2fe-hash",
        "l2fe-facenet-m32",
        {
            "seed": bytes(range(32)),
            "c": np.arange(32, dtype=np.uint32) * 2047,
            "salt": b"\x01" * 16,
            "verifier": b"\xaa" * 32,
            "R": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
            "x": np.array([1.5, -2.25]),
            "i": np.array([-(2**40), 7], dtype=np.int64),
        },
    )


def reseal(body: bytes) -> bytes:
    """A structurally edited record with a valid checksum, to reach the checks after it."""
    return body + hashlib.sha256(body).digest()[:CHECKSUM_BYTES]


def test_round_trip_keeps_every_field_and_type():
    record = sample_record()
    data = record.to_bytes()
    back = parse_record(data)
    assert back.scheme_id == record.scheme_id and back.parameter_set == record.parameter_set
    assert list(back.fields) == list(record.fields)
    for name, value in record.fields.items():
        if isinstance(value, bytes):
            assert back[name] == value
        else:
            assert back[name].dtype == value.dtype and back[name].shape == value.shape
            np.testing.assert_array_equal(back[name], value)
    assert back.to_bytes() == data


def test_layout_starts_with_magic_and_version():
    data = sample_record().to_bytes()
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION


def test_describe_needs_no_secret():
    d = sample_record().describe()
    assert d["scheme"] == "l2fe-hash" and d["parameter_set"] == "l2fe-facenet-m32"
    assert d["fields"]["c"] == {"kind": "array", "dtype": "<u4", "shape": [32], "bytes": 128}
    assert d["fields"]["seed"] == {"kind": "bytes", "bytes": 32}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_flipped_byte_is_detected(data):
    raw = bytearray(sample_record().to_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(RecordError):
        parse_record(bytes(raw))


def test_every_truncation_is_detected():
    raw = sample_record().to_bytes()
    for length in range(len(raw)):
        with pytest.raises(RecordError):
            parse_record(raw[:length])


def test_clear_messages():
    raw = sample_record().to_bytes()
    with pytest.raises(RecordError, match="truncated"):
        parse_record(raw[:10])
    with pytest.raises(RecordError, match="not a LatticeLock record"):
        parse_record(b"PK\x03\x04" + raw[4:])
    with pytest.raises(RecordError, match="newer"):
        parse_record(raw[:4] + bytes([FORMAT_VERSION + 1]) + raw[5:])
    with pytest.raises(RecordError, match="checksum"):
        parse_record(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(RecordError, match="checksum"):
        parse_record(raw[:40] + raw[41:])
    body = raw[:-CHECKSUM_BYTES]
    with pytest.raises(RecordError, match="trailing"):
        parse_record(reseal(body + b"\0"))


def test_structural_damage_behind_a_valid_checksum():
    empty = Record("mrp", "mrp-facenet-k128", {}).to_bytes()[:-CHECKSUM_BYTES]
    # One declared field that is not there.
    with pytest.raises(RecordError, match="truncated"):
        parse_record(reseal(empty[:-1] + b"\x01"))
    # An array whose byte length does not match its shape.
    field = b"\x01v" + bytes([1, 4, 1]) + struct.pack("<I", 3) + struct.pack("<I", 8) + b"\0" * 8
    with pytest.raises(RecordError, match="do not hold"):
        parse_record(reseal(empty[:-1] + b"\x01" + field))
    # An unknown dtype code.
    field = b"\x01v" + bytes([1, 99, 1]) + struct.pack("<I", 1) + struct.pack("<I", 4) + b"\0" * 4
    with pytest.raises(RecordError, match="dtype"):
        parse_record(reseal(empty[:-1] + b"\x01" + field))


def test_wrong_scheme_set_or_fields():
    record = sample_record()
    record.expect("l2fe-hash", "l2fe-facenet-m32")
    with pytest.raises(RecordError, match="scheme 'l2fe-hash', not 'mrp'"):
        record.expect("mrp")
    with pytest.raises(RecordError, match="parameter set 'l2fe-facenet-m32'.*'l2fe-facenet-m48'"):
        record.expect("l2fe-hash", "l2fe-facenet-m48")
    with pytest.raises(RecordError, match="expected exactly"):
        record.expect("l2fe-hash", "l2fe-facenet-m32", ("seed", "c"))
    with pytest.raises(RecordError, match="no field"):
        record["nothing"]


def test_unstorable_values_are_refused():
    with pytest.raises(RecordError):
        Record("x", "y", {"a": np.zeros(3, dtype=np.complex64)})
    with pytest.raises(RecordError):
        Record("x", "y", {"a": "text"})
    with pytest.raises(RecordError):
        Record("", "y", {})
    assert issubclass(RecordError, KernelsError)


def test_stored_arrays_are_read_only():
    record = sample_record()
    with pytest.raises(ValueError):
        record["c"][0] = 1
