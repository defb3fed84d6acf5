"""`latticelock bench fe`: a one-record run through the command line."""

from __future__ import annotations

import json
import os

from latticelock.tools.cli import main


def test_bench_fe_times_a_record_in_its_own_basis_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LATTICELOCK_CACHE", str(tmp_path / "user-cache"))
    environment = dict(os.environ)
    out = tmp_path / "fe.json"
    assert main(["bench", "fe", "--sets", "l2fe-facenet-m32", "--records", "1", "--threads", "1",
                 "--decoder-backend", "cpu", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["parameter_set"] == "l2fe-facenet-m32" and row["rep_cvp_accepted"] == row["rep_babai_accepted"] == 1
    assert row["basis_seconds"] > 0 and 0 < row["gen_kdf_share"] < 1
    assert "l2fe-facenet-m32" in capsys.readouterr().out
    # The bases went to a temporary folder of the command's own; the environment is as it was.
    assert not (tmp_path / "user-cache").exists() and dict(os.environ) == environment
