"""`latticelock bench device` runs end to end (fake pipeline, real scheme and simulated MCU); no timing assertions."""

from __future__ import annotations

import os

from device_fakes import PARAMETER_SET, RECIPE_OPTIONS, FakePipeline, write_frames
from latticelock.device.policy import PolicyConfig
from latticelock.tools.bench_device import format_report, run_bench


def test_bench_reports_throughput_and_attempts(tmp_path):
    affinity = os.sched_getaffinity(0)
    person = write_frames(tmp_path / "person", 1, range(12))
    try:
        report = run_bench(person, cores=1, enrol_frames=5, attempts=3, policy=PolicyConfig(k=2, n=3), mcu_sim=True,
                           parameter_set=PARAMETER_SET, recipe_options=RECIPE_OPTIONS, pipeline=FakePipeline(), progress=False)
    finally:
        os.sched_setaffinity(0, affinity)
    assert report["frames"] == 7 and report["frame_outcomes"] == {"usable": 7}
    assert report["accepted"] == 3 and report["attempts"] == 3 and report["fps"] > 0
    assert set(report["stage_median_ms"]) == {"detect", "gate", "embed"}
    assert len(report["cores"]) == 1
    text = format_report(report)
    assert "3/3 accepted" in text and "frames/s" in text


def test_bench_restores_affinity_and_refuses_zero_cores(tmp_path):
    import pytest

    from latticelock.tools.errors import ToolsError

    affinity = os.sched_getaffinity(0)
    person = write_frames(tmp_path / "person", 1, range(7))
    with pytest.raises(ToolsError, match="at least 1"):
        run_bench(person, cores=0, enrol_frames=5, attempts=1, policy=PolicyConfig(k=1, n=1), mcu_sim=False,
                  parameter_set=PARAMETER_SET, recipe_options=RECIPE_OPTIONS, pipeline=FakePipeline(), progress=False)
    report = run_bench(person, cores=1, enrol_frames=5, attempts=1, policy=PolicyConfig(k=1, n=1), mcu_sim=False,
                       parameter_set=PARAMETER_SET, recipe_options=RECIPE_OPTIONS, pipeline=FakePipeline(), progress=False)
    assert len(report["cores"]) == 1 and os.sched_getaffinity(0) == affinity


def test_rejected_attempts_do_not_lock_the_bench_out(tmp_path):
    person = write_frames(tmp_path / "person", 1, range(5))
    write_frames(person, 2, range(5, 8))  # every probe is someone else: all 7 attempts are rejected
    report = run_bench(person, cores=1, enrol_frames=5, attempts=7, policy=PolicyConfig(k=1, n=1), mcu_sim=False,
                       parameter_set=PARAMETER_SET, recipe_options=RECIPE_OPTIONS, pipeline=FakePipeline(), progress=False)
    assert report["attempts"] == 7 and report["accepted"] == 0
