"""`latticelock bench device` runs end to end (fake pipeline, real scheme and simulated MCU); no timing assertions."""

from __future__ import annotations

import os

import pytest

from device_fakes import PARAMETER_SET, RECIPE_OPTIONS, FakePipeline, write_frames
from latticelock.tools.bench_device import format_report, run_bench
from latticelock.tools.errors import ToolsError


def bench(person, **options):
    return run_bench(person, cores=1, parameter_set=PARAMETER_SET, recipe_options=RECIPE_OPTIONS, pipeline=FakePipeline(),
                     references=False, progress=False, **options)


@pytest.mark.parametrize("mode", ["hardened", "plain"])
def test_bench_reports_throughput_latency_and_memory(tmp_path, mode):
    affinity = os.sched_getaffinity(0)
    person = write_frames(tmp_path / "person", 1, range(12))
    report = bench(person, attempts=3, passes=2, mode=mode)
    assert os.sched_getaffinity(0) == affinity and len(report["cores"]) == 1
    assert report["frames"] == 14 and report["frame_outcomes"] == {"usable": 14} and report["fps"] > 0
    assert report["accepted"] == 3 and report["attempts"] == 3 and report["unlock_latency_median_s"] > 0
    assert {"detect", "gate", "embed", "latency"} <= set(report["stage_median_ms"])
    assert report["peak_rss_mb"] > 0 and report["latency_ratio"] is None  # no references asked for
    text = format_report(report)
    assert "3/3 accepted" in text and "frames/s" in text and "peak RSS" in text


def test_bench_refuses_zero_cores_and_short_replays(tmp_path):
    person = write_frames(tmp_path / "person", 1, range(5))
    with pytest.raises(ToolsError, match="need more than --enrol-frames 5"):
        bench(person, attempts=1)  # only 5 images: none left to probe
    with pytest.raises(ToolsError, match="at least 1"):
        run_bench(person, cores=0)


def test_rejected_attempts_do_not_lock_the_bench_out(tmp_path):
    person = write_frames(tmp_path / "person", 1, range(5))
    write_frames(person, 2, range(5, 8))  # every probe is someone else: all 7 attempts are rejected
    report = bench(person, attempts=7, passes=1, mode="plain")
    assert report["attempts"] == 7 and report["accepted"] == 0
