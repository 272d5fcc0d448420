"""Frame extraction: stream sampled RGB frames of a video's first video stream.

ffmpeg decodes the video in a subprocess and writes the sampled frames to a
pipe as PPM images (``image2pipe`` muxer, ``ppm`` codec). Each PPM header
carries the frame's width and height, so no ffprobe call is needed to learn
the size, and a size change in the middle of a stream is handled. A
``showinfo`` filter after the sampling filter logs each output frame's
timestamp to stderr, which a background thread drains and parses.

The filter chain, in order:

- ``[0:v:0]`` selects the first video stream, whatever the stream order
  (some .mov files store audio first).
- ffmpeg applies rotation metadata (the display matrix) before the filter
  graph, because autorotation is on by default.
- ``fps=R`` samples R frames per second of video time. Variable frame rate
  input is fine because the filter works on timestamps, not frame counts.
- ``scale=iw*sar:ih,setsar=1`` resamples non-square pixels to square ones,
  so faces keep their proportions (the scale filter of ffmpeg 9.0 reads an
  unknown aspect ratio as 1).
- ``showinfo`` logs ``n`` and ``pts_time`` of every output frame.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

log = logging.getLogger(__name__)

# Lines of ffmpeg's stderr (other than showinfo lines) kept for error messages.
STDERR_TAIL_LINES = 40

# Seconds to wait for a frame's showinfo line after its pixels arrived. The
# line is written before the frame is encoded, so this is only a safeguard.
TIMESTAMP_WAIT_SECONDS = 10.0

# Decoded frames buffered ahead of the consumer: 8 frames of 1920x1080 RGB are about 50 MB.
QUEUED_FRAMES = 8

DURATION_PATTERN = re.compile(r"^\s*Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
# A video whose decoded frames stop this far short of the container's duration is
# reported as truncated. The slack allows an audio track that outlasts the video.
TRUNCATION_SLACK_SECONDS = 2.0
TRUNCATION_SLACK_FRACTION = 0.2
SHOWINFO_PATTERN = re.compile(r"Parsed_showinfo.*?\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[0-9.eE+-]+)")


class VideoReadError(RuntimeError):
    """A video that ffmpeg cannot open or decode, or one without a video stream."""


@dataclass(frozen=True)
class Frame:
    """One sampled frame.

    ``index`` counts sampled frames from 0. ``timestamp`` is the sample's
    presentation time in seconds from the start of the video stream, as the
    ``fps`` filter assigns it (a multiple of 1/fps, within half a sample
    period of the source frame's own time). ``image`` is (H, W, 3) uint8 RGB,
    already rotated upright and with square pixels.
    """

    index: int
    timestamp: float
    image: np.ndarray


def ffmpeg_executable() -> str:
    """Return the ffmpeg binary to run: the one on PATH if any, else imageio-ffmpeg's bundled binary."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path

    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def build_ffmpeg_command(video: Path, fps: float, executable: str | None = None) -> list[str]:
    """Build the ffmpeg argument list that writes ``video``'s sampled frames as PPM to stdout.

    The input is passed as ``file:PATH`` so that names containing ``:`` or
    starting with ``-`` are read as plain files.
    """
    stream = ffmpeg.input(f"file:{video}")["v:0"]
    stream = stream.filter("fps", fps=fps)
    stream = stream.filter("scale", w="iw*sar", h="ih").filter("setsar", "1")
    stream = stream.filter("showinfo")
    output = ffmpeg.output(stream, "pipe:", format="image2pipe", vcodec="ppm")
    arguments = output.get_args()

    # Global options go before the input, because ffmpeg ignores trailing options.
    # showinfo logs at level info, so the log level must stay at least that verbose.
    global_options = ["-hide_banner", "-nostats", "-nostdin", "-loglevel", "info"]
    return [executable or ffmpeg_executable(), *global_options, *arguments]


class _StderrReader(threading.Thread):
    """Drain ffmpeg's stderr so the pipe never fills up, and collect showinfo timestamps."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.timestamps: dict[int, float] = {}
        self.duration: float | None = None
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.condition = threading.Condition()
        self.finished = False

    def run(self) -> None:
        try:
            for raw in self.stream:
                line = raw.decode("utf-8", errors="replace").rstrip()
                match = SHOWINFO_PATTERN.search(line)
                duration = DURATION_PATTERN.match(line)
                with self.condition:
                    if duration and self.duration is None:
                        hours, minutes, seconds = duration.groups()
                        self.duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
                    if match:
                        self.timestamps[int(match.group(1))] = float(match.group(3))
                    elif line:
                        self.tail.append(line)
                    self.condition.notify_all()
        finally:
            with self.condition:
                self.finished = True
                self.condition.notify_all()

    def timestamp(self, index: int) -> float | None:
        """Return frame ``index``'s timestamp, waiting for its log line; None if it never comes."""
        with self.condition:
            self.condition.wait_for(lambda: index in self.timestamps or self.finished, timeout=TIMESTAMP_WAIT_SECONDS)
            return self.timestamps.get(index)

    def error_text(self) -> str:
        with self.condition:
            return "\n".join(self.tail)


class _StdoutReader(threading.Thread):
    """Read PPM frames from ffmpeg's stdout into a bounded queue.

    Reading in a thread lets ffmpeg decode the next frames while the caller
    runs detection on the current one. Without it, ffmpeg blocks on the pipe
    (64 KiB) after a fraction of a frame, and decoding and detection take
    turns instead of overlapping.
    """

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.frames: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=QUEUED_FRAMES)
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                size = _read_ppm_header(self.stream)
                if size is None:
                    break
                width, height = size
                data = self.stream.read(width * height * 3)
                if len(data) != width * height * 3:
                    # ffmpeg died mid-frame; its exit status explains why.
                    break
                self._put(np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3))
        except (VideoReadError, OSError, ValueError) as error:
            self.error = str(error)
        finally:
            self._put(None)

    def _put(self, item: np.ndarray | None) -> None:
        while not self.stopping.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_image(self) -> np.ndarray | None:
        """Return the next frame, or None when the stream has ended."""
        return self.frames.get()

    def stop(self) -> None:
        self.stopping.set()


def _read_ppm_header(stdout) -> tuple[int, int] | None:
    """Read one binary PPM header; return (width, height), or None at a clean end of stream."""
    tokens: list[bytes] = []
    while len(tokens) < 4:
        line = stdout.readline()
        if not line:
            if tokens:
                raise VideoReadError(f"ffmpeg output ended inside a PPM header (read {tokens!r})")
            return None
        # Header fields may share lines or stand on their own, so collect whitespace-separated tokens.
        tokens.extend(line.split(b"#", 1)[0].split())

    magic, width, height, maxval = tokens[:4]
    if magic != b"P6" or maxval != b"255":
        raise VideoReadError(f"unexpected PPM header from ffmpeg: {tokens!r}")
    return int(width), int(height)


def _describe_failure(video: Path, returncode: int, stderr_text: str) -> str:
    """Turn ffmpeg's exit status and stderr into one message that names the file and the likely fix."""
    if "matches no streams" in stderr_text:
        reason = "it has no video stream (audio only, or not a video container)"
        fix = "point the recording at a file with a video track"
    elif "moov atom not found" in stderr_text:
        reason = "the MP4/MOV index (moov atom) is missing, so the file is truncated or is not an MP4/MOV file"
        fix = "copy or export the video again"
    elif "Invalid data found" in stderr_text:
        reason = "ffmpeg cannot parse it as a video (truncated, corrupt or not a video file)"
        fix = "check that the file plays, and copy or export it again"
    else:
        reason = f"ffmpeg exited with status {returncode}"
        fix = "check that the file plays"
    message = f"cannot read video {video}: {reason}; {fix}."
    return f"{message}\nffmpeg output:\n{stderr_text}" if stderr_text else message


def _check_complete(video: Path, frames: int, fps: float, duration: float | None) -> None:
    """Raise VideoReadError when the frames cover clearly less than the container's duration.

    ffmpeg exits with status 0 on a file cut off inside its video data, after
    decoding what is there, so a truncated recording would otherwise pass as a
    short one.
    """
    if not duration or frames == 0:
        return
    covered = frames / fps
    if duration - covered > max(TRUNCATION_SLACK_SECONDS, TRUNCATION_SLACK_FRACTION * duration):
        raise VideoReadError(
            f"cannot read video {video}: its frames stop after about {covered:.1f} s of the {duration:.1f} s "
            "that the container declares, so the file is probably truncated; copy or export it again."
        )


def iter_frames(video: str | Path, fps: float, keep_dir: str | Path | None = None) -> Iterator[Frame]:
    """Yield ``fps`` sampled frames per second of ``video`` as RGB arrays, decoding in a subprocess.

    Frames are streamed one at a time, so memory use does not grow with the
    video's length. When ``keep_dir`` is given, each frame is also written
    there as ``frame_NNNNNN.jpg`` for inspection.

    Raises VideoReadError, naming the file and the cause, when the file is
    missing or empty, when ffmpeg cannot open or decode it, or when it has no
    video stream. Frames decoded before a failure have already been yielded
    when the error is raised. Closing the generator early stops ffmpeg.
    """
    video = Path(video)
    if fps <= 0:
        raise ValueError(f"fps must be positive (frames sampled per second of video), got {fps}")
    if not video.is_file():
        raise VideoReadError(f"video file not found: {video}; check the path in the recordings table")
    if video.stat().st_size == 0:
        raise VideoReadError(f"video file is empty (0 bytes): {video}; copy or export it again")

    if keep_dir is not None:
        keep_dir = Path(keep_dir)
        keep_dir.mkdir(parents=True, exist_ok=True)

    command = build_ffmpeg_command(video, fps)
    log.debug("running %s", command)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr_reader = _StderrReader(process.stderr)
    stderr_reader.start()
    stdout_reader = _StdoutReader(process.stdout)
    stdout_reader.start()

    completed = False
    try:
        index = 0
        while True:
            image = stdout_reader.next_image()
            if image is None:
                break

            timestamp = stderr_reader.timestamp(index)
            if timestamp is None:
                # NOTE: only reached if ffmpeg stops logging showinfo lines; the
                # nominal sample time is then the best available estimate.
                timestamp = index / fps
            if keep_dir is not None:
                import cv2

                cv2.imwrite(str(keep_dir / f"frame_{index:06d}.jpg"), image[:, :, ::-1])

            yield Frame(index=index, timestamp=timestamp, image=image)
            index += 1

        returncode = process.wait()
        stderr_reader.join()
        if returncode != 0:
            raise VideoReadError(_describe_failure(video, returncode, stderr_reader.error_text()))
        if stdout_reader.error is not None:
            raise VideoReadError(f"cannot read video {video}: {stdout_reader.error}")
        if index == 0:
            log.warning("ffmpeg decoded no frames from %s", video)
        _check_complete(video, index, fps, stderr_reader.duration)
        completed = True
    finally:
        stdout_reader.stop()
        if not completed and process.poll() is None:
            process.kill()
        process.wait()
        stdout_reader.join(timeout=5)
        process.stdout.close()
        stderr_reader.join(timeout=5)
        process.stderr.close()
