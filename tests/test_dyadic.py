"""Dyadic recordings to labeled face crops: table validation, labeling, cropping, QC and merging.

The end-to-end tests run real ffmpeg and the real BlazeFace network on the
shared sample videos, and skip when the shared data folder is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from facemtl.detection import BlazeFaceDetector, Detection, TiledDetector, eye_roll_degrees
from facemtl.dyadic import (
    DEFAULT_SETTINGS,
    LABEL_COLUMNS,
    QC_COLUMNS,
    ParticipantTracker,
    crop_face,
    merge_recordings,
    participants_by_id,
    process_recording,
    read_participants,
    read_recordings,
    resolve_settings,
)
from facemtl.packed import read_pack, write_pack
from facemtl.video import VideoReadError, ffmpeg_executable, iter_frames

REPOSITORY = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def recordings(dyadic_dir) -> dict[tuple[str, str], dict]:
    table = read_recordings(dyadic_dir)
    return {(row["session_id"], row["view"]): row for row in table.to_dict("records")}


@pytest.fixture(scope="module")
def participants(dyadic_dir) -> dict[str, dict]:
    return participants_by_id(read_participants(dyadic_dir))


@pytest.fixture(scope="module")
def single_detector(blazeface_dir) -> TiledDetector:
    return TiledDetector(BlazeFaceDetector(blazeface_dir), tiles=1)


def run_ffmpeg(*arguments: str) -> None:
    command = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"ffmpeg failed: {' '.join(command)}\n{result.stderr}"


def make_test_video(path: Path, seconds: float = 1.0) -> Path:
    """Write a faceless testsrc video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg("-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    return path


def write_dyadic_dir(root: Path, recordings_csv: str, participants_csv: str, videos: tuple[str, ...] = ()) -> Path:
    """Write a dyadic folder with the given tables and faceless videos at the given relative paths."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "recordings.csv").write_text(textwrap.dedent(recordings_csv).lstrip())
    (root / "participants.csv").write_text(textwrap.dedent(participants_csv).lstrip())
    for video in videos:
        make_test_video(root / video, seconds=0.2)
    return root


PARTICIPANTS_CSV = """
    participant_id,age,gender,ethnicity
    P01,40,male,Asian
    P02,32,female,White
"""

RECORDINGS_CSV = """
    session_id,task,view,video,participants
    S01,talk,FC1,videos/S01/FC1.mp4,P01
    S01,talk,GENERAL,videos/S01/GENERAL.mp4,P01 P02
"""

VIDEOS = ("videos/S01/FC1.mp4", "videos/S01/GENERAL.mp4")


def recording_for(session: str = "T01", view: str = "FC1", participant_ids: tuple[str, ...] = ("P01",)) -> dict:
    return {"session_id": session, "task": "talk", "view": view, "video": f"{view}.mp4", "participants": list(participant_ids)}


TEST_PARTICIPANTS = {"P01": {"age": 40, "gender": "male", "ethnicity": "Asian"}}


# ---------------------------------------------------------------------------
# Tables


def test_shared_tables_read(dyadic_dir):
    started = time.perf_counter()
    table = read_recordings(dyadic_dir)
    elapsed = time.perf_counter() - started

    assert len(table) == 11
    general = table[table["view"] == "GENERAL"].iloc[0]
    assert general["participants"] == ["P09", "P10"]
    assert all(Path(path).is_file() for path in table["video_path"])
    # Called while Snakemake parses the workflow, so it must not decode video.
    assert elapsed < 2


def test_participants_parsed(dyadic_dir):
    table = read_participants(dyadic_dir)

    assert len(table) == 10
    assert table["age"].dtype.kind == "i"
    assert participants_by_id(table)["P09"] == {"age": 33, "gender": "male", "ethnicity": "Asian"}


def test_valid_tmp_tables(tmp_path):
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, PARTICIPANTS_CSV, VIDEOS)

    table = read_recordings(root)

    assert table["participants"].tolist() == [["P01"], ["P01", "P02"]]


def test_missing_recordings_table(tmp_path):
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, PARTICIPANTS_CSV)
    (root / "recordings.csv").unlink()

    with pytest.raises(FileNotFoundError, match="recordings table not found") as error:
        read_recordings(root)

    assert "session_id, task, view, video, participants" in str(error.value)


def test_missing_participants_table(tmp_path):
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, PARTICIPANTS_CSV, VIDEOS)
    (root / "participants.csv").unlink()

    with pytest.raises(FileNotFoundError, match="participants.csv"):
        read_recordings(root)


def test_missing_column(tmp_path):
    recordings_csv = """
        session_id,task,view,video
        S01,talk,FC1,videos/S01/FC1.mp4
    """
    root = write_dyadic_dir(tmp_path / "dyadic", recordings_csv, PARTICIPANTS_CSV, VIDEOS)

    with pytest.raises(ValueError, match=r"missing columns \['participants'\]"):
        read_recordings(root)


def test_missing_video_file(tmp_path):
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, PARTICIPANTS_CSV, VIDEOS[:1])

    with pytest.raises(FileNotFoundError, match="line 3: video 'videos/S01/GENERAL.mp4' not found"):
        read_recordings(root)


def test_participant_absent(tmp_path):
    recordings_csv = RECORDINGS_CSV.replace("P01 P02", "P01 P99")
    root = write_dyadic_dir(tmp_path / "dyadic", recordings_csv, PARTICIPANTS_CSV, VIDEOS)

    with pytest.raises(ValueError, match="line 3: participant P99 is not in") as error:
        read_recordings(root)

    assert "participants.csv" in str(error.value)


def test_unknown_gender_word(tmp_path):
    participants_csv = PARTICIPANTS_CSV.replace("female", "F")
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, participants_csv, VIDEOS)

    with pytest.raises(ValueError, match=r"line 3 \(participant P02\): unknown gender 'F'; use one of male, female"):
        read_recordings(root)


def test_unknown_ethnicity_word(tmp_path):
    participants_csv = PARTICIPANTS_CSV.replace("Asian", "Hispanic")
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, participants_csv, VIDEOS)

    with pytest.raises(ValueError, match="unknown ethnicity 'Hispanic'; use one of White, Black, Asian, Indian, Others"):
        read_participants(root)


def test_invalid_age(tmp_path):
    participants_csv = PARTICIPANTS_CSV.replace("40", "forty")
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, participants_csv)

    with pytest.raises(ValueError, match="age 'forty' is not a whole number"):
        read_participants(root)


def test_duplicate_participant(tmp_path):
    participants_csv = PARTICIPANTS_CSV + "    P01,41,male,Asian\n"
    root = write_dyadic_dir(tmp_path / "dyadic", RECORDINGS_CSV, participants_csv)

    with pytest.raises(ValueError, match="line 4: participant id 'P01' appears more than once"):
        read_participants(root)


def test_duplicate_recording(tmp_path):
    recordings_csv = RECORDINGS_CSV + "    S01,talk,FC1,videos/S01/GENERAL.mp4,P02\n"
    root = write_dyadic_dir(tmp_path / "dyadic", recordings_csv, PARTICIPANTS_CSV, VIDEOS)

    with pytest.raises(ValueError, match="line 4: recording S01/talk/FC1 appears more than once"):
        read_recordings(root)


def test_identifier_unfit_for_paths(tmp_path):
    recordings_csv = RECORDINGS_CSV.replace("S01,talk,FC1", "S01,small talk,FC1")
    root = write_dyadic_dir(tmp_path / "dyadic", recordings_csv, PARTICIPANTS_CSV, VIDEOS)

    with pytest.raises(ValueError, match="task 'small talk' may contain only"):
        read_recordings(root)


# ---------------------------------------------------------------------------
# Settings


def test_settings_defaults():
    settings = resolve_settings({})

    assert settings == {**DEFAULT_SETTINGS, "fps": 5.0}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"frame_rate": 5}, "unknown dyadic settings"),
        ({"detector": "dlib"}, "blazeface, haar, sfd"),
        ({"fps": 0}, "fps must be positive"),
        ({"tiles": "two"}, "tiles must be"),
        ({"on_unreadable": "ignore"}, "'fail' or 'skip'"),
        ({"min_score": 2}, "within 0..1"),
    ],
)
def test_settings_rejected(override, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(override)


# ---------------------------------------------------------------------------
# Labeling


def face_at(x: float, score: float = 0.9) -> Detection:
    return Detection(x - 40, 100, x + 40, 180, score)


def test_tracker_single_view_takes_best_score():
    tracker = ParticipantTracker(1, 500, 400)

    assigned, extras = tracker.assign([face_at(100, 0.8), face_at(300, 0.95)])

    assert [(position, detection.center[0]) for position, detection in assigned] == [(0, 300)]
    assert [detection.center[0] for detection in extras] == [100]


def test_tracker_assigns_left_to_right():
    tracker = ParticipantTracker(2, 1000, 360)

    assigned, extras = tracker.assign([face_at(800), face_at(250)])

    assert [(position, detection.center[0]) for position, detection in assigned] == [(0, 250), (1, 800)]
    assert extras == []


def test_tracker_lone_face_goes_to_nearest_track():
    tracker = ParticipantTracker(2, 1000, 360)
    tracker.assign([face_at(300), face_at(620)])

    # The right participant has moved toward the middle; a lone face there is still theirs.
    assigned, extras = tracker.assign([face_at(560)])

    assert [position for position, _ in assigned] == [1]
    assert extras == []


def test_tracker_counts_extra_face():
    tracker = ParticipantTracker(2, 1000, 360)

    assigned, extras = tracker.assign([face_at(240), face_at(500), face_at(760)])

    assert [(position, detection.center[0]) for position, detection in assigned] == [(0, 240), (1, 760)]
    assert [detection.center[0] for detection in extras] == [500]


def test_tracker_far_face_left_unassigned():
    tracker = ParticipantTracker(2, 1000, 360)
    tracker.assign([face_at(100), face_at(900)])

    assigned, extras = tracker.assign([face_at(100), face_at(120), face_at(140)])

    assert [position for position, _ in assigned] == [0]
    assert len(extras) == 2


# ---------------------------------------------------------------------------
# Cropping


def test_crop_pads_with_edge_pixels():
    frame = np.zeros((100, 100, 3), dtype=np.uint8)
    frame[:, :, 0] = 200  # uniform red, so any padding other than edge pixels shows
    detection = Detection(0, 0, 40, 40, 0.9)

    crop = crop_face(frame, detection, image_size=32, margin=0.5)

    assert crop.shape == (32, 32, 3)
    assert crop.dtype == np.uint8
    assert np.all(crop[:, :, 0] == 200)
    assert np.all(crop[:, :, 1:] == 0)


def test_crop_side_follows_margin():
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    frame[80:120, 80:120] = 255  # a white 40 px square standing in for the face box
    detection = Detection(80, 80, 120, 120, 0.9)

    crop = crop_face(frame, detection, image_size=80, margin=1.0)

    # Crop side 80 source pixels at 80 px output: the 40 px square spans the middle half.
    assert crop[40, 40].tolist() == [255, 255, 255]
    assert crop[10, 10].tolist() == [0, 0, 0]
    assert np.count_nonzero(crop[:, :, 0] > 127) == pytest.approx(40 * 40, rel=0.05)


def test_crop_levels_rolled_face(shared_dir, blazeface_dir):
    detector = BlazeFaceDetector(blazeface_dir)
    frame = next(iter_frames(shared_dir / "data" / "dyadic" / "videos" / "S01" / "talk" / "FC1.mp4", fps=5)).image
    upright_face = detector.detect(frame)[0]
    rotation = cv2.getRotationMatrix2D(upright_face.center, 20, 1.0)
    rolled = cv2.warpAffine(frame, rotation, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)

    rolled_face = detector.detect(rolled)[0]
    crop = crop_face(rolled, rolled_face, image_size=256, margin=0.4)
    crop_faces = detector.detect(crop)

    assert abs(eye_roll_degrees(rolled_face)) > 15
    assert len(crop_faces) == 1
    assert abs(eye_roll_degrees(crop_faces[0])) < 5


# ---------------------------------------------------------------------------
# Recordings end to end


def test_general_view_assigns_left_and_right(dyadic_dir, blazeface_dir, recordings, participants, tmp_path):
    recording = recordings[("S05", "GENERAL")]

    images, labels, qc = process_recording(
        recording["video_path"], recording, participants, {}, IMAGE_SIZE, blazeface_dir, montage_dir=tmp_path / "montages"
    )

    assert qc["frames_sampled"] == 36
    assert qc["frames_expected"] / qc["frames_sampled"] >= 0.95
    assert qc["tiles"] == 2
    assert images.shape == (len(labels), IMAGE_SIZE, IMAGE_SIZE, 3)
    assert list(labels.columns) == list(LABEL_COLUMNS)
    left = labels[labels["participant_id"] == "P09"]
    right = labels[labels["participant_id"] == "P10"]
    assert len(left) == len(right) == qc["frames_expected"]
    assert (left["x2"] < 500).all()
    assert (right["x1"] > 500).all()
    assert left[["age", "gender", "ethnicity"]].drop_duplicates().values.tolist() == [[33, 0, 2]]
    assert right[["age", "gender", "ethnicity"]].drop_duplicates().values.tolist() == [[33, 0, 0]]
    assert sorted(path.name for path in (tmp_path / "montages").iterdir()) == ["P09.png", "P10.png"]


def test_face_leaving_picture_counted_as_missed(blazeface_dir, recordings, participants, single_detector):
    recording = recordings[("S05", "FC1")]

    images, labels, qc = process_recording(
        recording["video_path"], recording, participants, {}, IMAGE_SIZE, blazeface_dir, detector=single_detector
    )

    # The participant is in the picture for the first 2.4 s (12 samples), then the video cuts to a title card.
    assert qc["frames_sampled"] == 32
    assert qc["frames_expected"] == 12
    assert qc["frames_missed"] == 20
    assert qc["faces_missed"] == 20
    assert qc["crops"] == len(images) == 12
    assert labels["timestamp"].max() < 2.4
    assert qc["status"] == "ok"


@pytest.mark.parametrize(
    ("session", "view"),
    [("S01", "FC1"), ("S01", "FC2"), ("S02", "FC1"), ("S02", "FC2"), ("S03", "FC1"),
     ("S03", "FC2"), ("S04", "FC1"), ("S04", "FC2"), ("S05", "FC2")],
)  # fmt: skip
def test_single_views_find_one_face(blazeface_dir, recordings, participants, single_detector, session, view):
    recording = recordings[(session, view)]

    images, labels, qc = process_recording(
        recording["video_path"], recording, participants, {}, IMAGE_SIZE, blazeface_dir, detector=single_detector
    )

    assert qc["frames_expected"] / qc["frames_sampled"] >= 0.99
    assert qc["faces_extra"] == 0
    assert (labels["participant_id"] == recording["participants"][0]).all()


def test_haar_backend_end_to_end(recordings, participants):
    recording = recordings[("S01", "FC1")]

    images, labels, qc = process_recording(recording["video_path"], recording, participants, {"detector": "haar"}, IMAGE_SIZE, None)

    assert qc["detector"] == "haar"
    assert qc["frames_sampled"] == 16
    assert qc["frames_expected"] >= 15
    assert len(images) == len(labels) == qc["crops"]


def test_same_input_same_crops(blazeface_dir, recordings, participants, single_detector):
    recording = recordings[("S01", "FC1")]

    first, first_labels, _ = process_recording(recording["video_path"], recording, participants, {}, IMAGE_SIZE, blazeface_dir, detector=single_detector)
    second, second_labels, _ = process_recording(recording["video_path"], recording, participants, {}, IMAGE_SIZE, blazeface_dir, detector=single_detector)

    assert np.array_equal(first, second)
    pd.testing.assert_frame_equal(first_labels, second_labels)


def test_faceless_video_is_no_faces(tmp_path, blazeface_dir):
    video = make_test_video(tmp_path / "pattern.mp4", seconds=1.0)

    images, labels, qc = process_recording(video, recording_for(), TEST_PARTICIPANTS, {}, IMAGE_SIZE, blazeface_dir, tmp_path / "montages")

    assert qc["status"] == "no_faces"
    assert qc["frames_sampled"] == 5
    assert qc["frames_missed"] == 5
    assert images.shape == (0, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert list(labels.columns) == list(LABEL_COLUMNS)
    assert (tmp_path / "montages").is_dir()


def test_unreadable_video_skipped(tmp_path, blazeface_dir):
    whole = make_test_video(tmp_path / "whole.mp4", seconds=2.0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[:1000])

    images, labels, qc = process_recording(
        truncated, recording_for(), TEST_PARTICIPANTS, {"on_unreadable": "skip"}, IMAGE_SIZE, blazeface_dir, tmp_path / "montages"
    )

    assert qc["status"] == "skipped"
    assert "truncated" in qc["error"]
    assert str(truncated) in qc["error"]
    assert len(images) == len(labels) == qc["crops"] == 0
    assert set(qc) == set(QC_COLUMNS)


def test_zero_byte_video_skipped(tmp_path, blazeface_dir):
    video = tmp_path / "empty.mp4"
    video.touch()

    _, _, qc = process_recording(video, recording_for(), TEST_PARTICIPANTS, {"on_unreadable": "skip"}, IMAGE_SIZE, blazeface_dir)

    assert qc["status"] == "skipped"
    assert "0 bytes" in qc["error"]


def test_unreadable_video_fails_by_default(tmp_path, blazeface_dir):
    video = tmp_path / "noise.mp4"
    video.write_bytes(bytes(range(256)) * 16)

    with pytest.raises(VideoReadError, match="cannot read video"):
        process_recording(video, recording_for(), TEST_PARTICIPANTS, {}, IMAGE_SIZE, blazeface_dir)


def test_audio_only_recording_skipped(tmp_path, blazeface_dir):
    audio = tmp_path / "FC1.m4a"
    run_ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio))

    _, _, qc = process_recording(audio, recording_for(), TEST_PARTICIPANTS, {"on_unreadable": "skip"}, IMAGE_SIZE, blazeface_dir)

    assert qc["status"] == "skipped"
    assert "no video stream" in qc["error"]


def test_unlisted_participant_raises(tmp_path, blazeface_dir):
    video = make_test_video(tmp_path / "pattern.mp4")

    with pytest.raises(ValueError, match=r"\['P77'\].*participants.csv"):
        process_recording(video, recording_for(participant_ids=("P77",)), TEST_PARTICIPANTS, {}, IMAGE_SIZE, blazeface_dir)


def test_keep_frames_written(tmp_path, blazeface_dir):
    video = make_test_video(tmp_path / "dir with spaces" / "vidéo ü.mp4", seconds=1.0)

    _, _, qc = process_recording(
        video, recording_for(), TEST_PARTICIPANTS, {"keep_frames": True, "fps": 2}, IMAGE_SIZE, blazeface_dir, tmp_path / "montages"
    )

    assert qc["frames_sampled"] == 2
    assert len(list((tmp_path / "montages" / "frames").glob("frame_*.jpg"))) == 2


def test_missing_blazeface_files_fail_before_decoding(tmp_path):
    video = make_test_video(tmp_path / "pattern.mp4")

    with pytest.raises(RuntimeError, match="blazeface.pth"):
        process_recording(video, recording_for(), TEST_PARTICIPANTS, {}, IMAGE_SIZE, tmp_path / "no-models")


# ---------------------------------------------------------------------------
# Merging


def write_recording_pack(folder: Path, count: int, session: str, size: int = IMAGE_SIZE) -> tuple[Path, Path, Path]:
    images = np.full((count, size, size, 3), len(session), dtype=np.uint8)
    labels = pd.DataFrame(
        [{**dict.fromkeys(LABEL_COLUMNS, 0), "session_id": session, "participant_id": "P01"} for _ in range(count)],
        columns=list(LABEL_COLUMNS),
    )
    if count == 0:
        labels = pd.DataFrame(columns=list(LABEL_COLUMNS))
    paths = (folder / f"{session}.npy", folder / f"{session}.csv", folder / f"{session}_qc.csv")
    write_pack(paths[0], paths[1], images, labels)
    pd.DataFrame([{**dict.fromkeys(QC_COLUMNS, ""), "session_id": session, "crops": count}]).to_csv(paths[2], index=False)
    return paths


def test_merge_concatenates_packs(tmp_path):
    packs = [write_recording_pack(tmp_path, count, session) for count, session in [(3, "A"), (0, "BB"), (2, "CCC")]]

    merge_recordings(
        [p[0] for p in packs], [p[1] for p in packs], [p[2] for p in packs],
        tmp_path / "out" / "images.npy", tmp_path / "out" / "labels.csv", tmp_path / "out" / "qc.csv",
    )  # fmt: skip

    images, labels = read_pack(tmp_path / "out" / "images.npy", tmp_path / "out" / "labels.csv")
    qc = pd.read_csv(tmp_path / "out" / "qc.csv", keep_default_na=False)
    assert images.shape == (5, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert labels["session_id"].tolist() == ["A"] * 3 + ["CCC"] * 2
    assert images[:, 0, 0, 0].tolist() == [1, 1, 1, 3, 3]
    assert qc["session_id"].tolist() == ["A", "BB", "CCC"]


def test_merge_rejects_mixed_sizes(tmp_path):
    first = write_recording_pack(tmp_path, 1, "A", size=64)
    second = write_recording_pack(tmp_path, 1, "B", size=32)

    with pytest.raises(ValueError, match="one image_size"):
        merge_recordings(
            [first[0], second[0]], [first[1], second[1]], [first[2], second[2]],
            tmp_path / "images.npy", tmp_path / "labels.csv", tmp_path / "qc.csv",
        )  # fmt: skip


# ---------------------------------------------------------------------------
# Workflow scripts


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("snakemake") is None and not (Path(sys.executable).parent / "snakemake").exists(), reason="snakemake not installed")
def test_scripts_run_under_snakemake(tmp_path, dyadic_dir, blazeface_dir, recordings, participants):
    recording = {key: value for key, value in recordings[("S01", "FC1")].items() if key != "video_path"}
    settings = {"fps": 2}
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        textwrap.dedent(
            f"""
            rule merge:
                input:
                    images=["faces/S01_FC1/images.npy"],
                    labels=["faces/S01_FC1/labels.csv"],
                    qc=["faces/S01_FC1/qc.csv"],
                output:
                    images="merged/images.npy",
                    labels="merged/labels.csv",
                    qc="merged/qc.csv",
                log: "logs/merge.log"
                script: {str(REPOSITORY / "workflow" / "scripts" / "dyadic_merge.py")!r}

            rule faces:
                input:
                    video={str(dyadic_dir / recording["video"])!r}
                output:
                    images="faces/S01_FC1/images.npy",
                    labels="faces/S01_FC1/labels.csv",
                    qc="faces/S01_FC1/qc.csv",
                    montages=directory("faces/S01_FC1/montages"),
                params:
                    recording={recording!r},
                    participants={participants!r},
                    settings={settings!r},
                    image_size={IMAGE_SIZE},
                    detector_dir={str(blazeface_dir)!r},
                log: "logs/faces.log"
                script: {str(REPOSITORY / "workflow" / "scripts" / "dyadic_faces.py")!r}
            """
        )
    )
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")

    result = subprocess.run([snakemake, "--cores", "1", "--snakefile", str(snakefile), "--directory", str(tmp_path)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr[-3000:]
    images, labels = read_pack(tmp_path / "merged" / "images.npy", tmp_path / "merged" / "labels.csv")
    assert images.shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert (labels["participant_id"] == "P01").all()
    assert (tmp_path / "faces" / "S01_FC1" / "montages" / "P01.png").is_file()
    assert "S01/talk/FC1: 6 frames sampled" in (tmp_path / "logs" / "faces.log").read_text()
    assert pd.read_csv(tmp_path / "merged" / "qc.csv")["status"].tolist() == ["ok"]
