"""Face detection benchmark on a dyadic data set: throughput and detection quality per backend.

Run ``python -m facemtl.bench_detect --dyadic DIR --blazeface DIR``. It
measures, with the default dyadic settings unless options override them:

- sampled frames per second (decode + detect + crop, model loading
  excluded) per backend over all recordings, and for the default backend over
  the 512x512 recordings alone, next to ffmpeg's decode-only rate;
- per recording and backend: frames sampled, frames with exactly the listed
  number of faces, with fewer (missed) and with more (extra);
- on views with several participants, per backend, how many of each
  participant's crops lie in that participant's slot of the frame;
- on views with several participants, how many frames have every face found
  with face_alignment's own BlazeFace helper (center crop to a square), with
  letterboxing, with one strip per participant, and with the back model.

The results replace the ``## Face detection`` section of the output Markdown
file (default docs/benchmarks.md) and leave its other sections as they are.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from facemtl.detection import BLAZEFACE_FILES, BlazeFaceDetector, TiledDetector, make_detector
from facemtl.dyadic import (
    build_detector,
    participants_by_id,
    process_recording,
    read_participants,
    read_recordings,
    resolve_settings,
    torch_threads,
)
from facemtl.video import ffmpeg_executable, iter_frames

log = logging.getLogger(__name__)

SECTION_TITLE = "## Face detection"
BENCHMARK_IMAGE_SIZE = 128


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's description elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ffmpeg_version() -> str:
    output = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout
    return output.splitlines()[0].split(" Copyright")[0] if output else "unknown"


def frame_size(video: str) -> tuple[int, int]:
    """Return (width, height) of the video's first sampled frame."""
    frames = iter_frames(video, fps=1)
    try:
        image = next(frames).image
    finally:
        frames.close()
    return image.shape[1], image.shape[0]


def slot_counts(recording: dict[str, Any], labels: pd.DataFrame) -> list[list[Any]]:
    """Count each participant's crops whose box center lies in their own slot (equal vertical strips, left to right)."""
    count = len(recording["participants"])
    width = frame_size(recording["video_path"])[0]
    centers = (labels["x1"].to_numpy(dtype=float) + labels["x2"].to_numpy(dtype=float)) / 2
    rows = []
    for position, participant in enumerate(recording["participants"]):
        own = labels["participant_id"].to_numpy() == participant
        inside = (centers >= position * width / count) & (centers < (position + 1) * width / count)
        rows.append([participant, f"{int((own & inside).sum())} / {int(own.sum())}"])
    return rows


def run_backend(
    recordings: list[dict[str, Any]], participants: dict, settings: dict[str, Any], blazeface_dir: Path
) -> tuple[list[dict[str, Any]], float, list[list[Any]]]:
    """Process every recording with one backend.

    Returns the QC rows, the seconds spent (model loading excluded) and, for
    views with several participants, each participant's crops in their own slot.
    """
    detectors: dict[int, Any] = {}
    rows = []
    slot_rows = []
    seconds = 0.0
    for recording in recordings:
        count = len(recording["participants"])
        if count not in detectors:
            detectors[count] = build_detector(settings, count, blazeface_dir)
        started = time.perf_counter()
        _, labels, qc = process_recording(
            recording["video_path"], recording, participants, settings, BENCHMARK_IMAGE_SIZE, blazeface_dir,
            detector=detectors[count],
        )  # fmt: skip
        seconds += time.perf_counter() - started
        rows.append(qc)
        if count > 1:
            name = f"{recording['session_id']}/{recording['task']}/{recording['view']}"
            slot_rows += [[name, settings["detector"], *row] for row in slot_counts(recording, labels)]
    return rows, seconds, slot_rows


def decode_rate(recordings: list[dict[str, Any]], fps: float) -> float:
    """Return sampled frames per second of decoding alone (ffmpeg plus pipe transfer)."""
    frames = 0
    started = time.perf_counter()
    for recording in recordings:
        frames += sum(1 for _ in iter_frames(recording["video_path"], fps))
    return frames / (time.perf_counter() - started)


def count_complete_frames(video: str, fps: float, expected: int, detect) -> tuple[int, int]:
    """Return (frames with exactly ``expected`` faces, frames sampled) for a detect function."""
    complete = total = 0
    for frame in iter_frames(video, fps):
        total += 1
        complete += len(detect(frame.image)) == expected
    return complete, total


def wide_view_rows(recordings: list[dict[str, Any]], blazeface_dir: Path, settings: dict[str, Any]) -> list[list[str]]:
    """Compare ways of running BlazeFace on views that list several participants."""
    from face_alignment.detection.blazeface.blazeface_detector import BlazeFaceDetector as FaceAlignmentBlazeFace

    weights, anchors = BLAZEFACE_FILES["front"]
    helper = FaceAlignmentBlazeFace(
        "cpu", path_to_detector=str(blazeface_dir / weights), path_to_anchor=str(blazeface_dir / anchors),
        min_score_thresh=settings["min_score"],
    )  # fmt: skip
    front = BlazeFaceDetector(blazeface_dir, "front", settings["min_score"])
    back = BlazeFaceDetector(blazeface_dir, "back", 0.65)

    rows = []
    for recording in recordings:
        count = len(recording["participants"])
        if count < 2:
            continue
        variants = {
            "face_alignment helper (center crop)": helper.detect_from_image,
            "front model, letterboxed frame": front.detect,
            f"front model, {count} strips (default)": TiledDetector(front, count).detect,
            "back model (min score 0.65), letterboxed frame": back.detect,
        }
        name = f"{recording['session_id']}/{recording['task']}/{recording['view']}"
        for variant, detect in variants.items():
            complete, total = count_complete_frames(recording["video_path"], settings["fps"], count, detect)
            rows.append([name, variant, f"{complete} / {total}"])
    return rows


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """Return ``document`` with its ``## Face detection`` section replaced by ``section`` (appended if absent)."""
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\s*$.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: section.rstrip() + "\n\n", document, count=1).rstrip() + "\n"
    if not document.strip():
        document = "# Benchmarks\n"
    return document.rstrip() + "\n\n" + section.rstrip() + "\n"


def build_section(args: argparse.Namespace) -> str:
    dyadic_dir = Path(args.dyadic)
    blazeface_dir = Path(args.blazeface)
    recordings = read_recordings(dyadic_dir).to_dict("records")
    participants = participants_by_id(read_participants(dyadic_dir))
    base = resolve_settings({"fps": args.fps})

    quality_rows: dict[str, list[list[Any]]] = {}
    speed_rows = []
    slot_rows: list[list[Any]] = []
    load_average = os.getloadavg()[0]
    for backend in args.backends:
        settings = {**base, "detector": backend}
        log.info("running backend %s on %d recordings", backend, len(recordings))
        qc_rows, seconds, backend_slot_rows = run_backend(recordings, participants, settings, blazeface_dir)
        slot_rows += backend_slot_rows
        frames = sum(row["frames_sampled"] for row in qc_rows)
        speed_rows.append([backend, "all recordings", frames, f"{seconds:.1f}", f"{frames / seconds:.1f}"])
        quality_rows[backend] = [
            [f"{row['session_id']}/{row['task']}/{row['view']}", row["frames_sampled"], row["frames_expected"],
             row["frames_missed"], row["frames_extra"], row["crops"]]
            for row in qc_rows
        ]  # fmt: skip

    square = [recording for recording in recordings if frame_size(recording["video_path"]) == (512, 512)]
    if square:
        settings = {**base, "detector": "blazeface"}
        qc_rows, seconds, _ = run_backend(square, participants, settings, blazeface_dir)
        frames = sum(row["frames_sampled"] for row in qc_rows)
        speed_rows.append(["blazeface", f"512x512 recordings ({len(square)})", frames, f"{seconds:.1f}", f"{frames / seconds:.1f}"])
        two_threads = {**settings, "torch_threads": 2}
        qc_rows, seconds, _ = run_backend(square, participants, two_threads, blazeface_dir)
        speed_rows.append(["blazeface, torch_threads 2", f"512x512 recordings ({len(square)})", frames, f"{seconds:.1f}", f"{frames / seconds:.1f}"])
        speed_rows.append(["(decode only)", f"512x512 recordings ({len(square)})", frames, "", f"{decode_rate(square, base['fps']):.1f}"])

    started = time.perf_counter()
    make_detector("blazeface", blazeface_dir, base["min_score"])
    load_seconds = time.perf_counter() - started

    with torch_threads(base["torch_threads"]):
        wide_rows = wide_view_rows(recordings, blazeface_dir, base)

    machine = (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {ffmpeg_version()}"
    )
    lines = [
        SECTION_TITLE,
        "",
        f"Written by `python -m facemtl.bench_detect` on {datetime.date.today().isoformat()}.",
        f"Machine: {machine}. The 1-minute load average before the run was {load_average:.1f}; "
        "a load near or above the CPU count means other jobs shared the CPUs, so rates are indicative.",
        f"Settings: dyadic defaults (fps {base['fps']:g} sampled frames per second of video, min_score "
        f"{base['min_score']}, tiles {base['tiles']}, margin {base['margin']}, batch_size {base['batch_size']}, "
        f"torch_threads {base['torch_threads']}), crops of "
        f"{BENCHMARK_IMAGE_SIZE} px. Frames are decoded at full resolution; ffmpeg only converts them to RGB.",
        "",
        "### Throughput",
        "",
        "Sampled frames per second of decode + detect + crop, model loading excluded "
        f"(loading BlazeFace took {load_seconds:.2f} s).",
        "",
        markdown_table(["backend", "videos", "sampled frames", "seconds", "frames / s"], speed_rows),
        "",
        "### Detection quality per recording",
        "",
        "expected: frames with exactly as many faces as the recording lists participants; "
        "missed: fewer; extra: more.",
        "A missed frame may show nobody at all (a cut to other footage, say), so check the montages "
        "before reading misses as detector errors.",
    ]
    for backend, rows in quality_rows.items():
        sampled = sum(row[1] for row in rows)
        expected = sum(row[2] for row in rows)
        lines += [
            "",
            f"Backend `{backend}`: {expected} of {sampled} sampled frames as expected ({100 * expected / max(sampled, 1):.1f}%).",
            "",
            markdown_table(["recording", "sampled", "expected", "missed", "extra", "crops"], rows),
        ]
    if slot_rows:
        lines += [
            "",
            "### Labels in views with several participants",
            "",
            "Crops of each participant whose box center lies in that participant's slot "
            "(the frame split into equal vertical strips, left to right).",
            "",
            markdown_table(["recording", "backend", "participant", "crops in own slot"], slot_rows),
        ]
    if wide_rows:
        lines += [
            "",
            "### BlazeFace input on views with several participants",
            "",
            "Frames in which every listed participant's face is found, per way of running BlazeFace.",
            "",
            markdown_table(["recording", "detector input", "frames with all faces"], wide_rows),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dyadic", required=True, help="dyadic data folder with recordings.csv, participants.csv and the videos")
    parser.add_argument("--blazeface", required=True, help="folder with blazeface.pth, anchors.npy, blazefaceback.pth, anchorsback.npy")
    parser.add_argument("--output", default="docs/benchmarks.md", help="Markdown file whose '## Face detection' section is replaced")
    parser.add_argument("--fps", type=float, default=resolve_settings({})["fps"], help="frames sampled per second of video")
    parser.add_argument(
        "--backends", nargs="+", default=["blazeface", "haar"], choices=["blazeface", "haar", "sfd"],
        help="backends to measure over all recordings",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    section = build_section(args)
    output = Path(args.output)
    document = output.read_text() if output.is_file() else ""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(replace_section(document, section))
    log.info("wrote section %r of %s", SECTION_TITLE, output)


if __name__ == "__main__":
    main()
