"""Detection backends on real frames of the shared dyadic sample, with the real BlazeFace weights and Haar cascade."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from facemtl.detection import (
    BlazeFaceDetector,
    Detection,
    DetectorUnavailableError,
    HaarDetector,
    SFDDetector,
    TiledDetector,
    make_detector,
    plausible_keypoints,
    sfd_weights_path,
)
from facemtl.video import iter_frames


@pytest.fixture(scope="module")
def blazeface(blazeface_dir) -> BlazeFaceDetector:
    return BlazeFaceDetector(blazeface_dir)


@pytest.fixture(scope="module")
def single_face_frame(shared_dir) -> np.ndarray:
    """First sampled frame of a 512x512 view with one participant facing the camera."""
    return next(iter_frames(shared_dir / "data" / "dyadic" / "videos" / "S01" / "talk" / "FC1.mp4", fps=5)).image


@pytest.fixture(scope="module")
def two_face_frame(shared_dir) -> np.ndarray:
    """First sampled frame of the 1000x360 view with two participants side by side."""
    return next(iter_frames(shared_dir / "data" / "dyadic" / "videos" / "S05" / "talk" / "GENERAL.mp4", fps=5)).image


def assert_inside(detection: Detection, frame: np.ndarray) -> None:
    height, width = frame.shape[:2]
    assert -1 <= detection.x1 < detection.x2 <= width + 1
    assert -1 <= detection.y1 < detection.y2 <= height + 1


def test_blazeface_finds_face_and_eyes(blazeface, single_face_frame):
    detections = blazeface.detect(single_face_frame)

    assert len(detections) == 1
    face = detections[0]
    assert face.score >= 0.75
    assert_inside(face, single_face_frame)
    assert face.right_eye is not None
    assert face.left_eye is not None
    # The subject's right eye appears on the image's left.
    assert face.right_eye[0] < face.left_eye[0]
    assert face.x1 < face.right_eye[0] < face.x2
    assert face.y1 < face.right_eye[1] < face.center[1]


def test_blazeface_wide_frame_keeps_sides(blazeface, two_face_frame):
    detections = sorted(blazeface.detect(two_face_frame), key=lambda detection: detection.x1)

    # face_alignment's own helper center-crops to 360x360 and loses both faces' sides.
    assert len(detections) == 2
    assert detections[0].center[0] < 500 < detections[1].center[0]


def test_blazeface_back_model(blazeface_dir, single_face_frame):
    detector = BlazeFaceDetector(blazeface_dir, model="back", min_score=0.65)

    detections = detector.detect(single_face_frame)

    assert detector.input_size == 256
    assert len(detections) == 1


def test_blazeface_batch_matches_single(blazeface, single_face_frame, two_face_frame):
    batch = blazeface.detect_batch([single_face_frame, two_face_frame])
    single = [blazeface.detect(single_face_frame), blazeface.detect(two_face_frame)]

    assert [len(faces) for faces in batch] == [len(faces) for faces in single]
    for batch_faces, single_faces in zip(batch, single):
        for a, b in zip(batch_faces, single_faces):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2, a.score], [b.x1, b.y1, b.x2, b.y2, b.score], atol=1e-3)


def test_blazeface_blank_frame_no_faces(blazeface):
    assert blazeface.detect(np.zeros((240, 320, 3), dtype=np.uint8)) == []


def test_blazeface_missing_weights_raises(tmp_path):
    started = time.perf_counter()

    with pytest.raises(DetectorUnavailableError, match="blazeface.pth") as error:
        BlazeFaceDetector(tmp_path)

    assert str(tmp_path) in str(error.value)
    assert "Download" in str(error.value)
    assert time.perf_counter() - started < 5


def test_blazeface_without_folder_raises():
    with pytest.raises(DetectorUnavailableError, match="haar"):
        make_detector("blazeface", model_dir=None)


def test_blazeface_rejects_invalid_frame(blazeface):
    with pytest.raises(ValueError, match="uint8"):
        blazeface.detect(np.zeros((64, 64, 3), dtype=np.float32))


def test_haar_finds_face(single_face_frame):
    detector = HaarDetector()

    detections = detector.detect(single_face_frame)

    assert len(detections) >= 1
    best = max(detections, key=lambda detection: detection.score)
    assert_inside(best, single_face_frame)
    assert best.right_eye is None
    assert best.score >= 4


def test_sfd_missing_weights_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    started = time.perf_counter()

    with pytest.raises(DetectorUnavailableError) as error:
        make_detector("sfd")

    message = str(error.value)
    assert str(sfd_weights_path()) in message
    assert str(tmp_path / "torch-home") in message
    assert "'blazeface'" in message
    assert "'haar'" in message
    assert time.perf_counter() - started < 5


def test_sfd_class_checks_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    with pytest.raises(DetectorUnavailableError, match="s3fd-619a316812.pth"):
        SFDDetector()


def test_unknown_detector_raises():
    with pytest.raises(ValueError, match="blazeface, haar, sfd"):
        make_detector("retinaface")


def test_tile_bounds_cover_frame_left_to_right(blazeface):
    tiled = TiledDetector(blazeface, tiles=2, overlap=0.25)

    bounds = tiled.tile_bounds(1000, 360)

    assert bounds == [(0, 625), (375, 1000)]


def test_tiled_detector_merges_face_in_overlap(blazeface, single_face_frame):
    # The face sits in the middle of a wide canvas, where both strips see all of it.
    canvas = np.zeros((512, 1200, 3), dtype=np.uint8)
    canvas[:, 344:856] = single_face_frame
    tiled = TiledDetector(blazeface, tiles=2)

    detections = tiled.detect(canvas)

    assert len(detections) == 1
    assert 450 < detections[0].center[0] < 750


def test_tiled_detector_finds_both_faces(blazeface, two_face_frame):
    tiled = TiledDetector(blazeface, tiles=2)

    detections = sorted(tiled.detect(two_face_frame), key=lambda detection: detection.x1)

    assert len(detections) == 2
    assert detections[0].center[0] < 500 < detections[1].center[0]
    assert all(detection.right_eye is not None for detection in detections)


def test_detection_shifted_moves_keypoints():
    detection = Detection(1, 2, 3, 4, 0.9, right_eye=(1.5, 2.5), left_eye=(2.5, 2.5))

    moved = detection.shifted(10, 20)

    assert (moved.x1, moved.y1, moved.x2, moved.y2) == (11, 22, 13, 24)
    assert moved.right_eye == (11.5, 22.5)
    assert moved.left_eye == (12.5, 22.5)
    assert moved.score == 0.9


@pytest.mark.parametrize(
    ("right_eye", "left_eye", "plausible"),
    [
        ((30.0, 40.0), (70.0, 40.0), True),  # level eyes 0.4 box widths apart
        ((30.0, 40.0), (70.0, 60.0), True),  # head rolled by 27 degrees
        ((45.0, 40.0), (55.0, 40.0), False),  # eyes 0.1 box widths apart
        ((50.0, 20.0), (55.0, 60.0), False),  # eye line at 83 degrees
        (None, None, True),  # no keypoints to check
    ],
)
def test_keypoint_plausibility(right_eye, left_eye, plausible):
    detection = Detection(0, 0, 100, 100, 0.9, right_eye=right_eye, left_eye=left_eye)

    assert plausible_keypoints(detection) is plausible
