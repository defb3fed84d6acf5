"""`latticelock bench decode` on the CPU: a tiny run, its bases file, and bad input."""

from __future__ import annotations

import json

import pytest

from latticelock.tools.cli import main

TINY = ["bench", "decode", "--m", "16", "--n", "4", "--block", "4", "--batch", "1,8", "--repeat", "1"]


def test_a_tiny_cpu_run_writes_rows_and_reuses_its_bases(tmp_path, capsys):
    out, bases = tmp_path / "bench.json", tmp_path / "bases.npz"
    assert main([*TINY, "--decoder-backends", "cpu", "--save-bases", str(bases), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["decoder"], r["mode"], r["batch"]) for r in rows} == {
        (d, mode, b) for d in ("babai", "cvp") for mode in ("one", "many") for b in (1, 8)}
    assert all(r["backend"] == "cpu" and r["decodes_per_s"] > 0 for r in rows)
    assert main([*TINY, "--decoder-backends", "cpu", "--bases", str(bases), "--decoders", "babai", "--modes", "one"]) == 0
    assert "babai" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--decoder-backends", "tpu"], "--decoder-backends takes"),
    (["--decoder-backends", "auto"], "--decoder-backends takes"),
    (["--bases", "{tmp}/truncated.npz"], "cannot read bases file"),
    (["--bases", "{tmp}/notes.npz"], "is not a bases file from `latticelock bench decode --save-bases` (not a .npz archive)"),
    (["--json", "{tmp}/absent/out.json"], "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    (tmp_path / "truncated.npz").write_bytes(b"PK\x03\x04" + bytes(40))
    (tmp_path / "notes.npz").write_text("not an archive\n")
    assert main([*TINY, *(e.format(tmp=tmp_path) for e in extra)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
