"""Frame sources named by URI, in the style of jetson-utils' videoSource.

    v4l2:///dev/video0          a V4L2 camera (OpenCV's V4L2 backend)
    csi://0                     a Jetson CSI camera (GStreamer nvarguscamerasrc pipeline)
    rtsp://host:port/path       a network stream (OpenCV's FFmpeg backend)
    file://clip.mp4             a video file
    dir://path/to/images        a folder of images replayed as frames, sorted by name;
                                `dir://path?start=5&count=10` replays a slice of that order

Every source has the same lifecycle (`open`, `capture(timeout)`, `is_streaming`, `close`), so a
replay stands in for a live camera in every demo and test. Frames are RGB uint8 arrays stamped by an
injectable clock; with a `ManualClock` and `SourceOptions.fps` a replay is deterministic.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np

from latticelock.device.clock import Clock, SystemClock
from latticelock.device.errors import SourceError

log = logging.getLogger(__name__)

SCHEMES = ("v4l2", "csi", "rtsp", "file", "dir")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}


# Larger frames are a configuration error, not something to allocate (a 100000 x 100000 frame is 30 GB).
MAX_SIDE = 8192


@dataclass(frozen=True)
class SourceOptions:
    """Settings shared by every source; `None` means the source's own default."""

    width: int | None = None
    """Frame width in pixels (`--input-width`); default: the source's native width (CSI: 1280); frames are resized to it."""
    height: int | None = None
    """Frame height in pixels (`--input-height`); default: the source's native height (CSI: 720)."""
    fps: float | None = None
    """Frames per second (`--input-rate`); cameras: requested rate (CSI: 30); replays: pacing (default: as fast as asked)."""
    loop: int = 0
    """Replays only (`--input-loop`): 0 plays once, N plays N extra times, -1 loops forever (default 0)."""
    timeout: float = 5.0
    """Seconds `capture()` waits for a frame when called without a timeout (`--input-timeout`, default 5)."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= MAX_SIDE:
                raise SourceError(f"{name} must be in 1..{MAX_SIDE} pixels, got {value}")
        if self.fps is not None and self.fps <= 0:
            raise SourceError(f"fps must be positive, got {self.fps}")
        if self.loop < -1:
            raise SourceError(f"loop must be -1 (forever), 0 or a positive count, got {self.loop}")
        if self.timeout <= 0:
            raise SourceError(f"timeout must be positive, got {self.timeout}")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    """RGB uint8 [H, W, 3]."""
    timestamp: float
    """Seconds on the source's clock when the frame was captured."""
    index: int
    """Position in the stream, counting from 0 (skipped malformed frames do not count)."""
    name: str = ""
    """Where it came from: the image file for dir://, else empty."""


@dataclass(frozen=True)
class SkippedFrame:
    name: str
    reason: str


class Source:
    """Base of every source: the shared lifecycle, iteration, and context management."""

    def __init__(self, uri: str, options: SourceOptions, clock: Clock) -> None:
        self.uri = uri
        self.options = options
        self.clock = clock
        self.skipped: list[SkippedFrame] = []
        self._index = 0
        self._open = False

    def open(self) -> "Source":
        raise NotImplementedError

    def _read(self, timeout: float) -> Frame | None:
        raise NotImplementedError

    @property
    def is_streaming(self) -> bool:
        return self._open

    def capture(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None when none came within `timeout` or the stream has ended (see is_streaming)."""
        if not self._open:
            return None
        return self._read(self.options.timeout if timeout is None else timeout)

    def close(self) -> None:
        self._open = False

    def _frame(self, image: np.ndarray, name: str = "") -> Frame:
        want_w, want_h = self.options.width, self.options.height
        if (want_w or want_h) and (image.shape[1], image.shape[0]) != (want_w or image.shape[1], want_h or image.shape[0]):
            image = cv2.resize(image, (want_w or image.shape[1], want_h or image.shape[0]), interpolation=cv2.INTER_AREA)
        frame = Frame(np.ascontiguousarray(image), self.clock.now(), self._index, name)
        self._index += 1
        return frame

    def __enter__(self) -> "Source":
        if not self._open:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the stream ends; a live stream that stays silent past the timeout is an error."""
        while True:
            frame = self.capture()
            if frame is not None:
                yield frame
            elif not self.is_streaming:
                return
            else:
                raise SourceError(f"{self.uri}: no frame within {self.options.timeout} s")


class DirSource(Source):
    """Replays the images of a folder, sorted by name; unreadable files are reported and skipped."""

    def __init__(self, uri: str, options: SourceOptions, clock: Clock, path: Path, start: int = 0, count: int | None = None) -> None:
        super().__init__(uri, options, clock)
        self.path = path
        self.start = start
        self.count = count
        self.files: list[Path] = []
        self._pos = 0
        self._passes = 0
        self._delivered_this_pass = 0
        self._next_due: float | None = None

    def open(self) -> "DirSource":
        if not self.path.is_dir():
            raise SourceError(f"{self.uri}: {self.path} is not a directory")
        # Regular files only: a FIFO or device named like an image would block the replay.
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        end = None if self.count is None else self.start + self.count
        self.files = files[self.start : end]
        if not self.files:
            raise SourceError(f"{self.uri}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the selected range")
        self._pos, self._passes, self._delivered_this_pass, self._open = 0, 0, 0, True
        log.info("opened %s: %d images, options %s", self.uri, len(self.files), self.options)
        return self

    def _read(self, timeout: float) -> Frame | None:
        while self._open:
            if self._pos == len(self.files):
                # A pass that yielded nothing would yield nothing again: looping on it would hang.
                more = self.options.loop == -1 or self._passes < self.options.loop
                if more and self._delivered_this_pass:
                    self._passes += 1
                    self._pos = 0
                    self._delivered_this_pass = 0
                else:
                    self._open = False
                    return None
            path = self.files[self._pos]
            self._pos += 1
            image = _read_image(path)
            if isinstance(image, str):
                log.warning("%s: skipping %s: %s", self.uri, path.name, image)
                if self._passes == 0:
                    self.skipped.append(SkippedFrame(str(path), image))
                continue
            self._pace()
            self._delivered_this_pass += 1
            return self._frame(image, str(path))
        return None

    def _pace(self) -> None:
        if self.options.fps is None:
            return
        period = 1.0 / self.options.fps
        now = self.clock.now()
        if self._next_due is None:
            self._next_due = now
        self.clock.sleep(self._next_due - now)
        self._next_due = max(self._next_due, now) + period


def _read_image(path: Path) -> np.ndarray | str:
    """RGB uint8 image, or the reason it cannot be read (the one image reader: `models.pipeline.load_image`)."""
    from latticelock.models.errors import ImageError
    from latticelock.models.pipeline import load_image

    try:
        image = load_image(path)
    except ImageError as exc:
        return str(exc).replace(f"{path}", path.name)
    if image.shape[0] < 2 or image.shape[1] < 2:
        return "not a usable frame (smaller than 2x2 pixels)"
    return image


def csi_pipeline(sensor_id: int, options: SourceOptions) -> str:
    """GStreamer pipeline for a Jetson CSI camera (Argus), ending in BGR frames for OpenCV's appsink."""
    width, height = options.width or 1280, options.height or 720
    fps = int(round(options.fps or 30))
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, format=NV12 ! "
        f"nvvidconv ! video/x-raw, width={width}, height={height}, format=BGRx ! "
        "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


class VideoSource(Source):
    """OpenCV VideoCapture behind a reader thread, so that `capture(timeout)` really times out.

    Live sources (v4l2, csi, rtsp) keep only the newest frame: a slow consumer sees the present,
    not a backlog. Files deliver every frame in order and honour `loop`.
    """

    def __init__(self, uri: str, options: SourceOptions, clock: Clock, target: str | int, api: int, live: bool) -> None:
        super().__init__(uri, options, clock)
        self.target = target
        self.api = api
        self.live = live
        self._cap: cv2.VideoCapture | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1 if live else 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()

    def _capture_device(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            raise SourceError(f"{self.uri}: cannot open (device missing, busy, or no {self._api_name()} support in this OpenCV build)")
        if self.api == cv2.CAP_V4L2:
            if self.options.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.width)
            if self.options.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.height)
            if self.options.fps:
                cap.set(cv2.CAP_PROP_FPS, self.options.fps)
        return cap

    def _api_name(self) -> str:
        return {cv2.CAP_V4L2: "V4L2", cv2.CAP_GSTREAMER: "GStreamer", cv2.CAP_FFMPEG: "FFmpeg"}.get(self.api, "video")

    def open(self) -> "VideoSource":
        self._cap = self._capture_device()
        settled = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            self._cap.get(cv2.CAP_PROP_FPS),
        )
        log.info("opened %s: %dx%d at %.1f fps, options %s", self.uri, *settled, self.options)
        self._stop.clear()
        self._ended.clear()
        self._open = True
        self._thread = threading.Thread(target=self._pump, name=f"source {self.uri}", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        passes = 0
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                if not self.live and (self.options.loop == -1 or passes < self.options.loop):
                    passes += 1
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                self._ended.set()
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self.live:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._queue.put_nowait(rgb)
            else:
                while not self._stop.is_set():
                    try:
                        self._queue.put(rgb, timeout=0.1)
                        break
                    except queue.Full:
                        continue

    def _read(self, timeout: float) -> Frame | None:
        # Waiting is real time whatever clock stamps the frames (a manual clock never advances here).
        deadline = time.monotonic() + timeout
        while True:
            try:
                image = self._queue.get(timeout=min(0.05, max(timeout, 0.0)))
                return self._frame(image)
            except queue.Empty:
                if self._ended.is_set() and self._queue.empty():
                    self._open = False
                    return None
                if time.monotonic() >= deadline:
                    return None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


def _split(uri: str) -> tuple[str | None, str, dict[str, list[str]]]:
    """(scheme, rest without query, query) of a source URI; relative paths stay relative."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None, uri, {}
    body, _, query = rest.partition("?")
    return scheme.lower(), body, parse_qs(query, keep_blank_values=True)


def _int_param(uri: str, query: dict[str, list[str]], name: str) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name][-1])
    except ValueError:
        raise SourceError(f"{uri}: {name}={query[name][-1]!r} is not an integer") from None
    if value < 0:
        raise SourceError(f"{uri}: {name} must be >= 0")
    return value


def create_source(uri: str, options: SourceOptions | None = None, clock: Clock | None = None) -> Source:
    """The source for `uri`, not yet opened; the scheme picks the backend (a bare path: dir or file)."""
    options = options or SourceOptions()
    clock = clock or SystemClock()
    scheme, body, query = _split(uri)
    if scheme is None:
        scheme = "dir" if Path(uri).is_dir() else "file"
    unknown = set(query) - ({"start", "count"} if scheme == "dir" else set())
    if unknown and scheme != "rtsp":
        raise SourceError(f"{uri}: unknown option(s) {', '.join(sorted(unknown))} for {scheme}://")
    if scheme == "dir":
        start = _int_param(uri, query, "start") or 0
        return DirSource(uri, options, clock, Path(body).expanduser(), start, _int_param(uri, query, "count"))
    if scheme == "file":
        path = Path(body).expanduser()
        if not path.is_file():
            raise SourceError(f"{uri}: no such video file {path}")
        return VideoSource(uri, options, clock, str(path), cv2.CAP_ANY, live=False)
    if scheme == "v4l2":
        if not body.startswith("/dev/"):
            raise SourceError(f"{uri}: expected v4l2:///dev/videoN")
        return VideoSource(uri, options, clock, body, cv2.CAP_V4L2, live=True)
    if scheme == "csi":
        if not body.isdigit():
            raise SourceError(f"{uri}: expected csi://N with N the sensor id")
        pipeline = csi_pipeline(int(body), options)
        return VideoSource(uri, replace(options, width=options.width or 1280, height=options.height or 720), clock, pipeline, cv2.CAP_GSTREAMER, live=True)
    if scheme == "rtsp":
        return VideoSource(uri, options, clock, uri, cv2.CAP_FFMPEG, live=True)
    raise SourceError(f"unsupported source scheme {scheme!r} in {uri!r}; supported: {', '.join(s + '://' for s in SCHEMES)}")


def open_source(uri: str, options: SourceOptions | None = None, clock: Clock | None = None) -> Source:
    """Create and open the source for `uri`."""
    return create_source(uri, options, clock).open()
