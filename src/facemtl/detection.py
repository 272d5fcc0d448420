"""Face detection backends behind one interface, chosen by name.

Every backend takes RGB frames, (H, W, 3) uint8, and returns a list of
Detection per frame, with boxes in pixel coordinates of that frame.

- ``blazeface`` (default): MediaPipe's BlazeFace network as ported in
  face_alignment 1.5.0, loaded from local weight files. This module calls the
  network itself instead of face_alignment's ``BlazeFaceDetector``, because
  that helper center-crops the frame to a square (wide frames lose their
  sides) and drops the six keypoints, which the cropper needs to level the
  eyes. Frames are letterboxed to a square instead.
- ``haar``: OpenCV's frontal-face Haar cascade with scaleFactor 1.05 and
  minNeighbors 4. It returns no keypoints.
- ``sfd``: face_alignment's S3FD. It needs ``s3fd-619a316812.pth`` in the
  torch hub cache, which face_alignment would download on first use.

``TiledDetector`` wraps any backend and runs it on overlapping vertical
tiles, one per expected face, for wide frames where the faces are small.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

DETECTORS = ("blazeface", "haar", "sfd")

BLAZEFACE_FILES = {
    "front": ("blazeface.pth", "anchors.npy"),
    "back": ("blazefaceback.pth", "anchorsback.npy"),
}
BLAZEFACE_INPUT_SIZE = {"front": 128, "back": 256}
BLAZEFACE_SOURCE = "https://github.com/hollance/BlazeFace-PyTorch (files blazeface.pth, anchors.npy, blazefaceback.pth, anchorsback.npy)"

# Overlap threshold of face_alignment's BlazeFace weighted non-maximum suppression.
BLAZEFACE_SUPPRESSION_IOU = 0.3

# BlazeFace detections whose keypoints do not look like a face are rejected:
# an eye line steeper than MAX_EYE_ROLL_DEGREES, or eyes closer together than
# MIN_EYE_DISTANCE_RATIO of the box width. On the dyadic sample videos, real
# faces stayed within 10 degrees of level with eye distances of 0.37-0.48 box
# widths. False positives on a title card had eye distances of 0.05-0.15 box
# widths or an eye line at 78 degrees.
# NOTE: the eye distance of a face turned ~60 degrees or more to the side
# falls below 0.2 box widths (an estimate, cos 60 * 0.4), so such faces are dropped.
MAX_EYE_ROLL_DEGREES = 60.0
MIN_EYE_DISTANCE_RATIO = 0.2

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.05
HAAR_MIN_NEIGHBORS = 4

SFD_WEIGHTS = "s3fd-619a316812.pth"
SFD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"


class DetectorUnavailableError(RuntimeError):
    """A detector whose model files are missing or cannot be loaded."""


@dataclass(frozen=True)
class Detection:
    """One face: box corners in pixels (x1, y1 top left; x2, y2 bottom right) and a score.

    ``score`` is in the backend's own unit: a probability for blazeface and
    sfd, the number of merged neighbour rectangles for haar. ``right_eye`` and
    ``left_eye`` are the subject's eye centers as (x, y) pixels, so the right
    eye is normally on the image's left. They are None for backends without
    keypoints.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    right_eye: tuple[float, float] | None = None
    left_eye: tuple[float, float] | None = None

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def shifted(self, dx: float, dy: float) -> Detection:
        """Return this detection moved by (dx, dy) pixels, keypoints included."""

        def move(point: tuple[float, float] | None) -> tuple[float, float] | None:
            return None if point is None else (point[0] + dx, point[1] + dy)

        return Detection(
            self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy, self.score, move(self.right_eye), move(self.left_eye)
        )


def eye_roll_degrees(detection: Detection) -> float:
    """Return the eye line's angle in degrees, positive when the image-right eye is lower; 0 without keypoints."""
    if detection.right_eye is None or detection.left_eye is None:
        return 0.0
    dx = detection.left_eye[0] - detection.right_eye[0]
    dy = detection.left_eye[1] - detection.right_eye[1]
    return math.degrees(math.atan2(dy, dx))


def plausible_keypoints(detection: Detection) -> bool:
    """Check the eye keypoints against MAX_EYE_ROLL_DEGREES and MIN_EYE_DISTANCE_RATIO; True without keypoints."""
    if detection.right_eye is None or detection.left_eye is None:
        return True
    eye_distance = math.dist(detection.right_eye, detection.left_eye)
    level_enough = abs(eye_roll_degrees(detection)) <= MAX_EYE_ROLL_DEGREES
    return level_enough and eye_distance >= MIN_EYE_DISTANCE_RATIO * detection.width


class FaceDetector(Protocol):
    """The interface every backend implements."""

    name: str

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Detect faces in one (H, W, 3) uint8 RGB frame."""
        ...

    def detect_batch(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in several frames (sizes may differ); one list per frame."""
        ...


def _check_frame(frame_rgb: np.ndarray) -> None:
    if frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB frame of shape (H, W, 3) and dtype uint8, got {frame_rgb.dtype} {frame_rgb.shape}")


class BlazeFaceDetector:
    """BlazeFace front (128 px input, faces near the camera) or back (256 px input, smaller faces) model."""

    name = "blazeface"

    def __init__(self, model_dir: str | Path, model: str = "front", min_score: float = 0.75, device: str = "cpu") -> None:
        if model not in BLAZEFACE_FILES:
            raise ValueError(f"unknown BlazeFace model {model!r}; choose 'front' or 'back'")
        weights_name, anchors_name = BLAZEFACE_FILES[model]
        model_dir = Path(model_dir)
        for file_name in (weights_name, anchors_name):
            if not (model_dir / file_name).is_file():
                raise DetectorUnavailableError(
                    f"BlazeFace {model} model file not found: {model_dir / file_name}. "
                    f"Download it from {BLAZEFACE_SOURCE} into {model_dir}, or set the detector directory "
                    "to the folder that holds it"
                )

        from face_alignment.detection.blazeface.net_blazeface import BlazeFace

        self.model = model
        self.input_size = BLAZEFACE_INPUT_SIZE[model]
        self.device = torch.device(device)
        self.net = BlazeFace(back_model=model == "back")
        self.net.load_state_dict(torch.load(model_dir / weights_name, map_location=self.device, weights_only=True))
        self.net.load_anchors_from_npy(np.load(model_dir / anchors_name), self.device)
        self.min_score = min_score
        self.net.min_score_thresh = min_score
        self.net.min_suppression_threshold = BLAZEFACE_SUPPRESSION_IOU
        self.net.to(self.device).eval()

    def _letterbox(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Pad the frame with black to a centered square and resize it to the network input.

        Returns the input image, the square's side in frame pixels, and the
        frame's offset (left, top) inside the square.
        """
        _check_frame(frame_rgb)
        height, width = frame_rgb.shape[:2]
        side = max(height, width)
        left = (side - width) // 2
        top = (side - height) // 2
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[top : top + height, left : left + width] = frame_rgb
        resized = cv2.resize(square, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        return resized, float(side), left, top

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([frame_rgb])[0]

    def detect_batch(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not frames_rgb:
            return []
        letterboxed = [self._letterbox(frame) for frame in frames_rgb]
        batch = np.stack([item[0] for item in letterboxed])
        predictions = self.net.predict_on_batch(batch)

        results = []
        for (_, side, left, top), faces in zip(letterboxed, predictions):
            faces = faces.cpu().numpy()
            detections = []
            for face in faces:
                # Each row: ymin, xmin, ymax, xmax, six (x, y) keypoints, score, all in [0, 1] of the square.
                # Keypoints 0 and 1 are the subject's right and left eye.
                def to_frame(x: float, y: float) -> tuple[float, float]:
                    return (float(x * side - left), float(y * side - top))

                x1, y1 = to_frame(face[1], face[0])
                x2, y2 = to_frame(face[3], face[2])
                detection = Detection(x1, y1, x2, y2, float(face[16]), to_frame(face[4], face[5]), to_frame(face[6], face[7]))

                # Weighted suppression averages the scores of merged candidates, so check the threshold again.
                if detection.score >= self.min_score and plausible_keypoints(detection):
                    detections.append(detection)
            results.append(detections)
        return results


class HaarDetector:
    """OpenCV's Haar cascade for frontal faces, loaded once."""

    name = "haar"

    def __init__(self, scale_factor: float = HAAR_SCALE_FACTOR, min_neighbors: int = HAAR_MIN_NEIGHBORS) -> None:
        path = cv2.data.haarcascades + HAAR_CASCADE
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorUnavailableError(
                f"cannot load the Haar cascade {path}; reinstall opencv-python 4.x, which ships it"
            )
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        _check_frame(frame_rgb)
        gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
        boxes, neighbours = self.cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors
        )
        return [
            Detection(float(x), float(y), float(x + w), float(y + h), float(count))
            for (x, y, w, h), count in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(neighbours).reshape(-1))
        ]

    def detect_batch(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(frame) for frame in frames_rgb]


def sfd_weights_path() -> Path:
    """Return where face_alignment keeps the S3FD weights: ``<torch hub dir>/checkpoints/s3fd-619a316812.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / SFD_WEIGHTS


class SFDDetector:
    """face_alignment's S3FD detector, loaded from the torch hub cache without downloading."""

    name = "sfd"

    def __init__(self, min_score: float = 0.5, device: str = "cpu") -> None:
        path = sfd_weights_path()
        if not path.is_file():
            raise DetectorUnavailableError(
                f"S3FD weights not found: {path} (the torch hub cache, torch.hub.get_dir() = {torch.hub.get_dir()}). "
                f"face_alignment downloads them from {SFD_URL} on first use, which needs network access. "
                "Copy the file there from a machine with access, or choose the detector 'blazeface' or 'haar'"
            )

        from face_alignment.detection.sfd.sfd_detector import SFDDetector as FaceAlignmentSFD

        # NOTE: only the missing-weights path is tested here; loading real
        # weights has not been run in this repository's tests.
        self.detector = FaceAlignmentSFD(device, path_to_detector=str(path), filter_threshold=min_score)

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        _check_frame(frame_rgb)
        # face_alignment's detectors take BGR images, as FaceAlignment passes them.
        boxes = self.detector.detect_from_image(np.ascontiguousarray(frame_rgb[:, :, ::-1]))
        return [Detection(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])) for b in boxes]

    def detect_batch(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(frame) for frame in frames_rgb]


def _intersection(a: Detection, b: Detection) -> float:
    width = min(a.x2, b.x2) - max(a.x1, b.x1)
    height = min(a.y2, b.y2) - max(a.y1, b.y1)
    return max(width, 0.0) * max(height, 0.0)


class TiledDetector:
    """Run a detector on ``tiles`` overlapping vertical strips of each frame and merge the results.

    Strip k is centered on x = (k + 0.5) * W / tiles and is ``(1 + overlap)``
    times the slot width W / tiles wide (at least H, at most W). A face that
    lies in two strips is found twice, so detections that cover the same face
    (intersection over the smaller box above ``same_face_overlap``) are merged.
    The copy kept is one not cut by an inner strip edge, then the one with the
    higher score.
    """

    def __init__(self, detector: FaceDetector, tiles: int, overlap: float = 0.25, same_face_overlap: float = 0.5) -> None:
        if tiles < 1:
            raise ValueError(f"tiles must be at least 1, got {tiles}")
        self.detector = detector
        self.tiles = tiles
        self.overlap = overlap
        self.same_face_overlap = same_face_overlap
        self.name = detector.name

    def tile_bounds(self, width: int, height: int) -> list[tuple[int, int]]:
        """Return each strip's (x_start, x_end) in pixels, left to right."""
        slot = width / self.tiles
        strip = int(round(min(width, max(slot * (1 + self.overlap), height))))
        bounds = []
        for k in range(self.tiles):
            center = (k + 0.5) * slot
            start = int(round(min(max(center - strip / 2, 0), width - strip)))
            bounds.append((start, start + strip))
        return bounds

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([frame_rgb])[0]

    def detect_batch(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if self.tiles == 1:
            return self.detector.detect_batch(frames_rgb)

        strips = []
        for frame in frames_rgb:
            _check_frame(frame)
            height, width = frame.shape[:2]
            for start, end in self.tile_bounds(width, height):
                strips.append((frame[:, start:end], start, end, width))
        strip_detections = self.detector.detect_batch([strip[0] for strip in strips])

        results = []
        for i in range(len(frames_rgb)):
            candidates = []
            for (_, start, end, width), detections in zip(
                strips[i * self.tiles : (i + 1) * self.tiles], strip_detections[i * self.tiles : (i + 1) * self.tiles]
            ):
                for detection in detections:
                    moved = detection.shifted(start, 0)
                    # A box that touches an inner strip edge probably shows only part of a face.
                    cut = (start > 0 and moved.x1 <= start + 1) or (end < width and moved.x2 >= end - 1)
                    candidates.append((cut, moved))
            results.append(self._merge(candidates))
        return results

    def _merge(self, candidates: list[tuple[bool, Detection]]) -> list[Detection]:
        candidates.sort(key=lambda item: (item[0], -item[1].score))
        unique_faces: list[Detection] = []
        for _, detection in candidates:
            duplicate = any(
                _intersection(detection, other) > self.same_face_overlap * min(detection.area, other.area)
                for other in unique_faces
            )
            if not duplicate:
                unique_faces.append(detection)
        return unique_faces


def make_detector(
    name: str, model_dir: str | Path | None = None, min_score: float = 0.75, blazeface_model: str = "front", device: str = "cpu"
) -> FaceDetector:
    """Build the backend called ``name`` (one of DETECTORS).

    ``model_dir`` is the folder with the BlazeFace files, needed only for
    ``blazeface``. ``min_score`` is the probability threshold of blazeface and
    sfd; haar has no probability and uses minNeighbors 4 instead. Raises
    DetectorUnavailableError at once when model files are missing.
    """
    if name == "blazeface":
        if not model_dir:
            raise DetectorUnavailableError(
                f"the blazeface detector needs the folder with its model files; download them from {BLAZEFACE_SOURCE} "
                "and set the detector directory, or choose the detector 'haar'"
            )
        return BlazeFaceDetector(model_dir, model=blazeface_model, min_score=min_score, device=device)
    if name == "haar":
        return HaarDetector()
    if name == "sfd":
        return SFDDetector(min_score=min_score, device=device)
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
