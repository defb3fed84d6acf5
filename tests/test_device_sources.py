"""Frame sources: URI dispatch, dir:// replay (slices, loops, pacing, malformed files), file:// video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from latticelock.device.clock import ManualClock
from latticelock.device.errors import SourceError
from latticelock.device.sources import (
    DirSource,
    SourceOptions,
    VideoSource,
    create_source,
    csi_pipeline,
    open_source,
)


def write_images(folder, count, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.full((size[1], size[0], 3), i * 10, np.uint8)
        image[..., 2] = 200  # red in BGR order: frames must come back as RGB
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), image)
    return folder


def test_dir_replays_sorted_rgb_frames(tmp_path):
    folder = write_images(tmp_path / "faces", 4)
    with open_source(f"dir://{folder}") as source:
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.name.rsplit("/", 1)[1] for f in frames] == [f"img_{i:03d}.png" for i in range(4)]
    assert frames[2].image.shape == (30, 40, 3) and frames[2].image.dtype == np.uint8
    assert frames[2].image[0, 0].tolist() == [200, 20, 20]
    assert not source.is_streaming and source.capture() is None


def test_dir_slice_loop_and_resize(tmp_path):
    folder = write_images(tmp_path / "faces", 6)
    source = open_source(f"dir://{folder}?start=2&count=3", SourceOptions(loop=1, width=20, height=10))
    names = [f.name[-7:-4] for f in source]
    assert names == ["002", "003", "004"] * 2
    assert source.capture() is None


def test_relative_dir_uri(tmp_path, monkeypatch):
    write_images(tmp_path / "faces", 2)
    monkeypatch.chdir(tmp_path)
    assert len(list(open_source("dir://faces"))) == 2
    assert isinstance(create_source("faces"), DirSource)


def test_replay_with_manual_clock_is_deterministic(tmp_path):
    folder = write_images(tmp_path / "faces", 5)

    def stamps():
        return [f.timestamp for f in open_source(f"dir://{folder}", SourceOptions(fps=4), ManualClock(100.0))]

    assert stamps() == stamps() == [100.0, 100.25, 100.5, 100.75, 101.0]


def test_malformed_frames_are_reported_and_skipped(tmp_path, caplog):
    folder = write_images(tmp_path / "faces", 3)
    (folder / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "img_001b.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, not listed")
    source = open_source(f"dir://{folder}")
    frames = list(source)
    assert [f.name[-11:] for f in frames] == ["img_000.png", "img_002.png"]
    assert [f.index for f in frames] == [0, 1]
    reasons = sorted(s.reason for s in source.skipped)
    assert len(reasons) == 2 and "is empty" in reasons[0] and "not a readable image" in reasons[1], reasons
    assert "skipping" in caplog.text


def test_huge_images_fifos_and_endless_loops_end_cleanly(tmp_path):
    """Issue 11, case 6: a 50000 x 50000 PNG is refused from its header, a FIFO named like an image is
    not opened, and looping forever over images with no usable frame ends."""
    import os
    import struct
    import zlib

    folder = write_images(tmp_path / "faces", 1)
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header
                                      + struct.pack(">I", zlib.crc32(b"IHDR" + header)))
    os.mkfifo(folder / "a.jpg")
    source = open_source(f"dir://{folder}")
    frames = list(source)
    assert len(frames) == 1 and any("50000x50000" in s.reason for s in source.skipped)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not an image")
    assert list(open_source(f"dir://{broken}", SourceOptions(loop=-1))) == []


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://example.com/x", "unsupported source scheme 'http'"),
        ("dir:///no/such/folder", "is not a directory"),
        ("file:///no/such/clip.mp4", "no such video file"),
        ("v4l2://video0", "v4l2:///dev/videoN"),
        ("csi://front", "sensor id"),
        ("dir://x?start=-1", "start must be >= 0"),
        ("dir://x?count=two", "not an integer"),
        ("dir://x?fps=3", "unknown option"),
    ],
)
def test_bad_uris_say_what_is_wrong(uri, message):
    with pytest.raises(SourceError, match=message):
        open_source(uri)


def test_empty_selection_is_an_error(tmp_path):
    folder = write_images(tmp_path / "faces", 2)
    with pytest.raises(SourceError, match="no images"):
        open_source(f"dir://{folder}?start=5")


@pytest.mark.parametrize("bad", [dict(width=0), dict(fps=-1), dict(loop=-2), dict(timeout=0)])
def test_options_are_checked(bad):
    with pytest.raises(SourceError):
        SourceOptions(**bad)


def test_csi_builds_an_argus_pipeline():
    pipeline = csi_pipeline(1, SourceOptions(width=640, height=480, fps=15))
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ")
    assert "width=640, height=480, framerate=15/1" in pipeline and pipeline.endswith("sync=false")
    source = create_source("csi://0")
    assert isinstance(source, VideoSource) and source.api == cv2.CAP_GSTREAMER
    assert (source.options.width, source.options.height) == (1280, 720)
    assert create_source("v4l2:///dev/video0").api == cv2.CAP_V4L2
    assert create_source("rtsp://127.0.0.1:8554/cam").target == "rtsp://127.0.0.1:8554/cam"


def test_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open"):
        open_source("v4l2:///dev/video97")


def test_file_source_plays_a_video_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    with open_source(f"file://{path}", SourceOptions(loop=1, timeout=2)) as source:
        frames = list(source)
    assert len(frames) == 10 and frames[0].image.shape == (48, 64, 3)
    levels = [int(f.image.mean()) for f in frames]
    assert levels[:5] == levels[5:] and levels[0] < levels[4]
    assert source.capture(0.1) is None


def test_a_silent_live_source_times_out_in_real_time_even_with_a_manual_clock():
    import queue
    import threading

    source = VideoSource("v4l2:///dev/fake", SourceOptions(timeout=0.2), ManualClock(), "/dev/fake", cv2.CAP_V4L2, live=True)
    source._open = True
    source._queue = queue.Queue()
    source._ended = threading.Event()
    assert source.capture(0.2) is None and source.is_streaming
    with pytest.raises(SourceError, match="no frame within 0.2 s"):
        next(iter(source))


def test_a_looping_replay_of_only_unreadable_files_ends_instead_of_hanging(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "b.jpg").write_bytes(b"")
    source = open_source(f"dir://{folder}", SourceOptions(loop=-1))
    assert list(source) == [] and not source.is_streaming
    assert len(source.skipped) == 2


def test_a_looping_replay_reports_each_unreadable_file_once(tmp_path):
    folder = write_images(tmp_path / "faces", 2)
    (folder / "img_000b.png").write_bytes(b"")
    source = open_source(f"dir://{folder}", SourceOptions(loop=2))
    assert len(list(source)) == 6 and len(source.skipped) == 1
