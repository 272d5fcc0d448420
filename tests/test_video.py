"""Frame extraction against real ffmpeg, on small videos generated into tmp_path and on the shared sample."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from facemtl.video import Frame, VideoReadError, ffmpeg_executable, iter_frames


def run_ffmpeg(*arguments: str) -> None:
    """Run ffmpeg quietly, failing the test with its stderr when it fails."""
    command = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"ffmpeg failed: {' '.join(command)}\n{result.stderr}"


def make_test_video(path: Path, size: str = "160x120", rate: int = 25, seconds: float = 2.0, codec: str = "libx264") -> Path:
    """Write a testsrc video (a moving pattern with a frame counter)."""
    run_ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}", "-c:v", codec, "-pix_fmt", "yuv420p", str(path))
    return path


def test_samples_at_requested_rate(tmp_path):
    video = make_test_video(tmp_path / "clip.mp4", rate=25, seconds=2.0)

    frames = list(iter_frames(video, fps=5))

    assert len(frames) == 10
    assert all(isinstance(frame, Frame) for frame in frames)
    assert [frame.index for frame in frames] == list(range(10))
    assert np.allclose([frame.timestamp for frame in frames], np.arange(10) * 0.2, atol=1e-6)
    assert frames[0].image.shape == (120, 160, 3)
    assert frames[0].image.dtype == np.uint8


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [("mp4", "libx264"), ("mov", "libx264"), ("avi", "mpeg4"), ("mkv", "libx264"), ("webm", "libvpx-vp9")],
)
def test_reads_container(tmp_path, suffix, codec):
    video = make_test_video(tmp_path / f"clip.{suffix}", seconds=1.0, codec=codec)

    frames = list(iter_frames(video, fps=4))

    assert len(frames) == 4
    assert frames[0].image.shape == (120, 160, 3)


def test_rotation_metadata_applied(tmp_path):
    upright = make_test_video(tmp_path / "upright.mp4", size="96x48", seconds=0.4)
    rotated = tmp_path / "rotated.mp4"
    run_ffmpeg("-display_rotation", "90", "-i", str(upright), "-c", "copy", str(rotated))

    upright_frame = next(iter_frames(upright, fps=5)).image
    rotated_frame = next(iter_frames(rotated, fps=5)).image

    assert rotated_frame.shape == (96, 48, 3)
    # A display rotation of 90 degrees turns the picture counter-clockwise.
    difference = np.abs(rotated_frame.astype(int) - np.rot90(upright_frame, k=1).astype(int)).mean()
    assert difference < 3


def test_first_video_stream_after_audio(tmp_path):
    video = tmp_path / "audio_first.mov"
    run_ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
        "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip

    frames = list(iter_frames(video, fps=5))

    assert len(frames) == 5
    assert frames[0].image.shape == (48, 64, 3)


def test_variable_frame_rate_uses_timestamps(tmp_path):
    # 10 frames at 10 fps, then 30 frames at 30 fps: 2 seconds in 40 frames.
    video = tmp_path / "vfr.mkv"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
        "-vf", "settb=1/300,setpts='if(lt(N,10),N/10,1+(N-10)/30)/TB'", "-frames:v", "40",
        "-fps_mode", "passthrough", "-enc_time_base:v", "1/300", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip

    frames = list(iter_frames(video, fps=10))

    assert 19 <= len(frames) <= 21
    timestamps = np.array([frame.timestamp for frame in frames])
    assert np.allclose(timestamps, np.arange(len(frames)) / 10, atol=1e-6)


def test_non_square_pixels_resampled(tmp_path):
    video = tmp_path / "anamorphic.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5",
        "-vf", "setsar=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip

    frame = next(iter_frames(video, fps=5))

    assert frame.image.shape == (48, 128, 3)


def test_unknown_pixel_aspect_kept(tmp_path):
    video = tmp_path / "unknown_sar.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5",
        "-vf", "setsar=0", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip

    frame = next(iter_frames(video, fps=5))

    assert frame.image.shape == (48, 64, 3)


def test_path_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "dir with spaces" / "sesión ü"
    folder.mkdir(parents=True)
    video = make_test_video(folder / "vidéo 名前: take-1.mp4", seconds=1.0)

    frames = list(iter_frames(video, fps=2))

    assert len(frames) == 2


def test_keep_frames_writes_jpegs(tmp_path):
    video = make_test_video(tmp_path / "clip.mp4", seconds=1.0)

    frames = list(iter_frames(video, fps=3, keep_dir=tmp_path / "frames"))

    written = sorted(path.name for path in (tmp_path / "frames").iterdir())
    assert written == [f"frame_{i:06d}.jpg" for i in range(len(frames))]


def test_closing_early_stops_ffmpeg(tmp_path):
    video = make_test_video(tmp_path / "long.mp4", size="320x240", seconds=20.0)
    frames = iter_frames(video, fps=25)

    next(frames)
    started = time.perf_counter()
    frames.close()

    assert time.perf_counter() - started < 5


def test_missing_file_raises(tmp_path):
    with pytest.raises(VideoReadError, match="not found"):
        list(iter_frames(tmp_path / "absent.mp4", fps=5))


def test_zero_byte_file_raises(tmp_path):
    video = tmp_path / "empty.mp4"
    video.touch()

    with pytest.raises(VideoReadError, match=r"empty \(0 bytes\)"):
        list(iter_frames(video, fps=5))


def test_truncated_file_raises(tmp_path):
    whole = make_test_video(tmp_path / "whole.mp4", size="320x240", seconds=2.0)
    truncated = tmp_path / "truncated.mp4"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(VideoReadError, match="truncated") as error:
        list(iter_frames(truncated, fps=5))

    assert str(truncated) in str(error.value)


def test_file_cut_inside_video_data_raises(tmp_path):
    # With the index at the front (faststart), ffmpeg opens the cut file, decodes
    # the first half and exits with status 0, so only the duration shows the loss.
    whole = tmp_path / "whole.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=12",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole),
    )
    truncated = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(VideoReadError, match="probably truncated") as error:
        list(iter_frames(truncated, fps=2))

    assert str(truncated) in str(error.value)
    assert "of the 12.0 s that the container declares" in str(error.value)


def test_unreadable_file_raises(tmp_path):
    video = tmp_path / "noise.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    with pytest.raises(VideoReadError, match="cannot read video") as error:
        list(iter_frames(video, fps=5))

    assert str(video) in str(error.value)


def test_audio_only_file_raises(tmp_path):
    audio = tmp_path / "speech.m4a"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))

    with pytest.raises(VideoReadError, match="no video stream"):
        list(iter_frames(audio, fps=5))


def test_non_positive_fps_rejected(tmp_path):
    with pytest.raises(ValueError, match="fps must be positive"):
        list(iter_frames(tmp_path / "any.mp4", fps=0))


def test_shared_hevc_mov_with_audio_first(shared_dir):
    video = shared_dir / "data" / "dyadic" / "videos" / "S05" / "talk" / "FC1.mov"

    frames = list(iter_frames(video, fps=5))

    # 6.42 s of variable frame rate HEVC; the audio stream comes first in the file.
    assert len(frames) == 32
    assert frames[0].image.shape == (540, 960, 3)
    timestamps = np.array([frame.timestamp for frame in frames])
    assert np.all(np.diff(timestamps) > 0)
