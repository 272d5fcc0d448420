"""Dyadic-interaction videos to labeled face crops, packed like UTKFace.

A dyadic data set is a directory with two tables and the videos they name:

- ``recordings.csv``: session_id, task, view, video (path relative to the
  directory), participants (space-separated participant ids, left to right
  as they sit in the picture).
- ``participants.csv``: participant_id, age (years), gender (male/female),
  ethnicity (White/Black/Asian/Indian/Others).

``process_recording`` turns one recording into crops and labels: it samples
frames (``facemtl.video``), detects faces (``facemtl.detection``), assigns
faces to the listed participants, crops each face to UTKFace-like framing and
counts what went wrong in a QC record. ``merge_recordings`` joins the
per-recording packs into one pack and one QC table.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from facemtl.detection import DETECTORS, Detection, FaceDetector, TiledDetector, eye_roll_degrees, make_detector
from facemtl.packed import ETHNICITIES, GENDERS, empty_images, read_pack, write_pack
from facemtl.video import VideoReadError, iter_frames

log = logging.getLogger(__name__)

RECORDING_COLUMNS = ("session_id", "task", "view", "video", "participants")
PARTICIPANT_COLUMNS = ("participant_id", "age", "gender", "ethnicity")

# Session, task and view become Snakemake wildcards and path parts.
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LABEL_COLUMNS = (
    "session_id", "task", "view", "participant_id", "frame_index", "timestamp",
    "x1", "y1", "x2", "y2", "score", "age", "gender", "ethnicity",
)  # fmt: skip

QC_COLUMNS = (
    "session_id", "task", "view", "video", "detector", "tiles", "frames_sampled", "frames_expected",
    "frames_missed", "frames_extra", "faces_missed", "faces_extra", "crops", "seconds", "status", "error",
)  # fmt: skip

DEFAULT_SETTINGS: dict[str, Any] = {
    "fps": 5.0,
    "detector": "blazeface",
    "blazeface_model": "front",
    "min_score": 0.75,
    "margin": 0.4,
    "tiles": "auto",
    "on_unreadable": "fail",
    "keep_frames": False,
    "montage_size": 36,
    "batch_size": 16,
    "torch_threads": 1,
}

MONTAGE_COLUMNS = 6


# ---------------------------------------------------------------------------
# Tables


def _csv_line(row_position: int) -> int:
    """Return the line number in the CSV file of data row ``row_position`` (0-based), counting the header as line 1."""
    return row_position + 2


def _read_table(path: Path, columns: Sequence[str], table_name: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{table_name} table not found: {path}; create it with the columns {', '.join(columns)}")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [column.strip() for column in table.columns]
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: missing columns {missing}; the header must contain {', '.join(columns)} "
            f"(found {', '.join(table.columns)})"
        )
    for column in columns:
        table[column] = table[column].str.strip()
        empty = table.index[table[column] == ""]
        if len(empty):
            raise ValueError(f"{path} line {_csv_line(empty[0])}: empty value in column {column!r}; fill it in")
    return table


def read_participants(dyadic_dir: str | Path) -> pd.DataFrame:
    """Read and validate ``participants.csv``: one row per participant, ids unique.

    Returns a DataFrame with columns participant_id (str), age (int, years),
    gender (male/female) and ethnicity (White/Black/Asian/Indian/Others), the
    words of facemtl.packed.GENDERS and ETHNICITIES. Raises FileNotFoundError
    or ValueError naming the file, the line and the value.
    """
    path = Path(dyadic_dir) / "participants.csv"
    table = _read_table(path, PARTICIPANT_COLUMNS, "participants")

    for position, row in enumerate(table.itertuples(index=False)):
        where = f"{path} line {_csv_line(position)} (participant {row.participant_id})"
        if not row.age.isdigit():
            raise ValueError(f"{where}: age {row.age!r} is not a whole number of years")
        if row.gender not in GENDERS:
            raise ValueError(f"{where}: unknown gender {row.gender!r}; use one of {', '.join(GENDERS)}")
        if row.ethnicity not in ETHNICITIES:
            raise ValueError(f"{where}: unknown ethnicity {row.ethnicity!r}; use one of {', '.join(ETHNICITIES)}")

    duplicated = table["participant_id"].duplicated()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        participant_id = table["participant_id"].iloc[position]
        raise ValueError(
            f"{path} line {_csv_line(position)}: participant id {participant_id!r} appears more than once; "
            "keep one row per participant"
        )

    table = table[list(PARTICIPANT_COLUMNS)].copy()
    table["age"] = table["age"].astype(int)
    return table


def participants_by_id(participants: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Return ``read_participants``'s table as {participant_id: {age, gender, ethnicity}}."""
    return {
        row.participant_id: {"age": int(row.age), "gender": row.gender, "ethnicity": row.ethnicity}
        for row in participants.itertuples(index=False)
    }


def read_recordings(dyadic_dir: str | Path) -> pd.DataFrame:
    """Read and validate ``recordings.csv`` against the files and ``participants.csv``.

    Returns one row per recording with the table's columns, ``participants``
    as a list of ids (left to right), and ``video_path``, the video's absolute
    path as a string. Only file existence is checked, and no video is decoded,
    so this is cheap enough to call while a workflow is parsed.

    Raises FileNotFoundError or ValueError naming the file, line and value.
    The checked cases are a missing table or column, an empty cell, and a
    session, task or view unfit for a path. Also checked: a duplicate
    (session_id, task, view), a video that does not exist, a participant id
    listed twice in one recording, and one absent from ``participants.csv``.
    """
    dyadic_dir = Path(dyadic_dir).resolve()
    path = dyadic_dir / "recordings.csv"
    table = _read_table(path, RECORDING_COLUMNS, "recordings")
    known = set(read_participants(dyadic_dir)["participant_id"])

    participant_lists = []
    video_paths = []
    for position, row in enumerate(table.itertuples(index=False)):
        where = f"{path} line {_csv_line(position)}"
        for column in ("session_id", "task", "view"):
            value = getattr(row, column)
            if not IDENTIFIER_PATTERN.match(value):
                raise ValueError(
                    f"{where}: {column} {value!r} may contain only letters, digits, '_', '.' and '-' "
                    "(it becomes part of file names)"
                )

        video = dyadic_dir / row.video
        if not video.is_file():
            raise FileNotFoundError(f"{where}: video {row.video!r} not found at {video}; fix the path or add the file")

        ids = row.participants.split()
        if len(set(ids)) != len(ids):
            raise ValueError(f"{where}: participants {row.participants!r} lists an id twice")
        unknown = [participant for participant in ids if participant not in known]
        if unknown:
            raise ValueError(
                f"{where}: participant {', '.join(unknown)} is not in {dyadic_dir / 'participants.csv'}; "
                "add a row for it there or fix the id"
            )
        participant_lists.append(ids)
        video_paths.append(str(video))

    duplicated = table.duplicated(["session_id", "task", "view"])
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        row = table.iloc[position]
        raise ValueError(
            f"{path} line {_csv_line(position)}: recording {row.session_id}/{row.task}/{row.view} appears more "
            "than once; each (session_id, task, view) must be unique"
        )

    table = table[list(RECORDING_COLUMNS)].copy()
    table["participants"] = participant_lists
    table["video_path"] = video_paths
    return table


def resolve_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``settings`` merged over DEFAULT_SETTINGS, with every value checked.

    Keys: fps (frames sampled per second of video, > 0), detector (blazeface,
    haar or sfd), blazeface_model (front or back), min_score (detection
    probability threshold of blazeface and sfd, 0..1), margin (crop side = box
    side * (1 + margin), >= 0), tiles (auto: one strip per listed participant
    when there are several; none: whole frame; or a positive integer),
    on_unreadable (fail or skip), keep_frames (bool: also write sampled frames
    as JPEG), montage_size (crops per participant montage, 0 for none),
    batch_size (frames per detector call), torch_threads (intra-op threads
    while detecting, >= 1).
    """
    merged = dict(DEFAULT_SETTINGS)
    merged.update(settings or {})
    unknown = sorted(set(merged) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown dyadic settings {unknown}; known settings are {', '.join(DEFAULT_SETTINGS)}")

    if not float(merged["fps"]) > 0:
        raise ValueError(f"dyadic setting fps must be positive, got {merged['fps']!r}")
    if merged["detector"] not in DETECTORS:
        raise ValueError(f"dyadic setting detector {merged['detector']!r} is unknown; choose one of {', '.join(DETECTORS)}")
    if merged["blazeface_model"] not in ("front", "back"):
        raise ValueError(f"dyadic setting blazeface_model must be 'front' or 'back', got {merged['blazeface_model']!r}")
    if not 0 <= float(merged["min_score"]) <= 1:
        raise ValueError(f"dyadic setting min_score must be within 0..1, got {merged['min_score']!r}")
    if float(merged["margin"]) < 0:
        raise ValueError(f"dyadic setting margin must be at least 0, got {merged['margin']!r}")
    tiles = merged["tiles"]
    if tiles not in ("auto", "none") and not (isinstance(tiles, int) and not isinstance(tiles, bool) and tiles >= 1):
        raise ValueError(f"dyadic setting tiles must be 'auto', 'none' or a positive integer, got {tiles!r}")
    if merged["on_unreadable"] not in ("fail", "skip"):
        raise ValueError(f"dyadic setting on_unreadable must be 'fail' or 'skip', got {merged['on_unreadable']!r}")
    if int(merged["montage_size"]) < 0 or int(merged["batch_size"]) < 1 or int(merged["torch_threads"]) < 1:
        raise ValueError(
            f"dyadic settings need montage_size >= 0, batch_size >= 1 and torch_threads >= 1, got "
            f"{merged['montage_size']!r}, {merged['batch_size']!r} and {merged['torch_threads']!r}"
        )

    merged["fps"] = float(merged["fps"])
    merged["min_score"] = float(merged["min_score"])
    merged["margin"] = float(merged["margin"])
    merged["keep_frames"] = bool(merged["keep_frames"])
    merged["montage_size"] = int(merged["montage_size"])
    merged["batch_size"] = int(merged["batch_size"])
    merged["torch_threads"] = int(merged["torch_threads"])
    return merged


def tile_count(tiles: str | int, participant_count: int) -> int:
    """Return the number of detection strips for a view listing ``participant_count`` participants."""
    if tiles == "none":
        return 1
    if tiles == "auto":
        return max(participant_count, 1)
    return int(tiles)


# ---------------------------------------------------------------------------
# Labeling


def _match_tracks(centers: list[tuple[float, float]], detections: list[Detection]) -> list[tuple[int, int]]:
    """Return (track, detection) index pairs that minimize the summed horizontal distance.

    Brute force over injective matchings, which is cheap for the two to four
    people of a dyadic or small-group view.
    """
    track_count, detection_count = len(centers), len(detections)
    size = min(track_count, detection_count)
    best_cost, best_pairs = math.inf, []
    for tracks in itertools.permutations(range(track_count), size):
        for columns in itertools.combinations(range(detection_count), size):
            cost = sum(abs(detections[c].center[0] - centers[t][0]) for t, c in zip(tracks, columns))
            if cost < best_cost:
                best_cost, best_pairs = cost, list(zip(tracks, columns))
    return best_pairs


class ParticipantTracker:
    """Assign each frame's faces to the participants of a view, keeping identities stable across frames.

    With one participant, the highest-scoring face is theirs. With several,
    each participant has a track, a center that starts in the middle of their
    slot (equal vertical slots, left to right) and follows their assigned
    faces. When a frame has exactly as many faces as participants, faces go
    left to right, because people sitting side by side keep their order.
    Otherwise faces are matched to tracks by minimal total horizontal
    distance, and a face farther than one slot width from its track is left
    unassigned. Unassigned faces are returned as extras for counting.
    """

    def __init__(self, participant_count: int, frame_width: int, frame_height: int) -> None:
        if participant_count < 1:
            raise ValueError("a view must list at least one participant")
        self.count = participant_count
        self.slot_width = frame_width / participant_count
        self.centers = [((k + 0.5) * self.slot_width, frame_height / 2) for k in range(participant_count)]

    def assign(self, detections: list[Detection]) -> tuple[list[tuple[int, Detection]], list[Detection]]:
        """Return ([(participant position, detection)], unassigned detections) for one frame."""
        if not detections:
            return [], []

        if self.count == 1:
            ranked = sorted(detections, key=lambda detection: -detection.score)
            assigned = [(0, ranked[0])]
            extras = ranked[1:]
        elif len(detections) == self.count:
            ordered = sorted(detections, key=lambda detection: detection.center[0])
            assigned = list(enumerate(ordered))
            extras = []
        else:
            pairs = _match_tracks(self.centers, detections)
            assigned = []
            matched = set()
            for track, column in pairs:
                if abs(detections[column].center[0] - self.centers[track][0]) <= self.slot_width:
                    assigned.append((track, detections[column]))
                    matched.add(column)
            extras = [detection for i, detection in enumerate(detections) if i not in matched]

        for track, detection in assigned:
            self.centers[track] = detection.center
        return sorted(assigned, key=lambda item: item[0]), extras


# ---------------------------------------------------------------------------
# Cropping and montages


def crop_face(frame_rgb: np.ndarray, detection: Detection, image_size: int, margin: float) -> np.ndarray:
    """Cut a square face crop, (image_size, image_size, 3) uint8, with the eyes level.

    The square is centered on the box center, its side is the box's longer
    side times (1 + margin), and it is rotated about the box center by the
    eye line's angle when the detection has eye keypoints. Where the square
    leaves the frame, edge pixels are repeated. The square is cut at source
    resolution (bilinear) and then resized with cv2.INTER_AREA.
    """
    center_x, center_y = detection.center
    side = max(int(round(max(detection.width, detection.height) * (1 + margin))), 1)
    rotation = cv2.getRotationMatrix2D((center_x, center_y), eye_roll_degrees(detection), 1.0)
    rotation[0, 2] += side / 2 - center_x
    rotation[1, 2] += side / 2 - center_y
    square = cv2.warpAffine(frame_rgb, rotation, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(square, (image_size, image_size), interpolation=cv2.INTER_AREA)


def montage(crops: np.ndarray, columns: int = MONTAGE_COLUMNS) -> np.ndarray:
    """Tile crops (N, S, S, 3) into one RGB image, ``columns`` per row, black where the last row is short."""
    count, size = len(crops), crops.shape[1]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * size, columns * size, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        row, column = divmod(i, columns)
        grid[row * size : (row + 1) * size, column * size : (column + 1) * size] = crop
    return grid


def write_montages(crops: np.ndarray, labels: pd.DataFrame, participant_ids: list[str], montage_dir: Path, size: int) -> None:
    """Write ``<participant_id>.png`` per participant: up to ``size`` crops spread evenly over the recording."""
    montage_dir.mkdir(parents=True, exist_ok=True)
    if size == 0:
        return
    for participant in participant_ids:
        rows = np.flatnonzero(labels["participant_id"].to_numpy() == participant)
        if len(rows) == 0:
            log.warning("no crops of participant %s, so no montage for them in %s", participant, montage_dir)
            continue
        chosen = rows[np.unique(np.linspace(0, len(rows) - 1, min(size, len(rows))).round().astype(int))]
        cv2.imwrite(str(montage_dir / f"{participant}.png"), montage(crops[chosen])[:, :, ::-1])


# ---------------------------------------------------------------------------
# One recording


def _empty_labels() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in LABEL_COLUMNS})


def _label_row(recording: dict[str, Any], participant_id: str, person: dict[str, Any], frame, detection: Detection) -> dict:
    return {
        "session_id": recording["session_id"],
        "task": recording["task"],
        "view": recording["view"],
        "participant_id": participant_id,
        "frame_index": frame.index,
        "timestamp": round(frame.timestamp, 4),
        "x1": round(detection.x1, 1),
        "y1": round(detection.y1, 1),
        "x2": round(detection.x2, 1),
        "y2": round(detection.y2, 1),
        "score": round(detection.score, 4),
        "age": int(person["age"]),
        "gender": GENDERS.index(person["gender"]),
        "ethnicity": ETHNICITIES.index(person["ethnicity"]),
    }


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Set torch's intra-op thread count for the block, then restore it.

    ffmpeg decodes in its own process, so one torch thread leaves a second
    core to the decoder. On a 2-core Xeon shared with other jobs (torch
    2.14.1), a batch of 16 BlazeFace inputs took 3 ms per frame with one
    thread. With two threads it took up to 59 ms per frame, because the
    threads wait for a busy core.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_detector(settings: dict[str, Any], participant_count: int, detector_dir: str | Path | None) -> FaceDetector:
    """Build the configured backend, wrapped in strips when the settings and participant count call for it."""
    detector = make_detector(
        settings["detector"],
        model_dir=detector_dir,
        min_score=settings["min_score"],
        blazeface_model=settings["blazeface_model"],
    )
    return TiledDetector(detector, tile_count(settings["tiles"], participant_count))


def process_recording(
    video: str | Path,
    recording: dict[str, Any],
    participants: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    image_size: int,
    detector_dir: str | Path | None,
    montage_dir: str | Path | None = None,
    detector: FaceDetector | None = None,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Sample, detect, assign and crop the faces of one recording.

    ``recording`` is one row of recordings.csv as a dict, with ``participants``
    a list of ids left to right. ``participants`` maps each id to {age, gender,
    ethnicity} in the words of participants.csv. ``settings`` is merged over
    DEFAULT_SETTINGS (see resolve_settings). ``detector_dir`` is the folder
    with the BlazeFace model files. ``montage_dir``, when given, receives one
    montage PNG per participant and, with keep_frames, a ``frames/`` folder.
    ``detector`` replaces the one built from the settings (the benchmark uses
    it to load a model once).

    Returns crops (N, image_size, image_size, 3) uint8 RGB, labels (N rows,
    LABEL_COLUMNS, with gender and ethnicity encoded as in facemtl.packed) and
    a QC dict (QC_COLUMNS). ``frame_index`` counts sampled frames. QC status is
    ``ok``, ``no_faces`` (no face ever assigned, not an error) or ``skipped``
    (unreadable video with on_unreadable: skip; ``error`` contains the reason).
    An unreadable video raises VideoReadError with on_unreadable: fail.
    """
    started = time.perf_counter()
    settings = resolve_settings(settings)
    video = Path(video)
    participant_ids = list(recording["participants"])
    missing = [participant for participant in participant_ids if participant not in participants]
    if missing:
        raise ValueError(
            f"recording {recording['session_id']}/{recording['task']}/{recording['view']} lists participants "
            f"{missing} that have no age, gender and ethnicity; add them to participants.csv"
        )
    if settings["keep_frames"] and montage_dir is None:
        raise ValueError("keep_frames needs a montage directory to write the frames into")

    if detector is None:
        detector = build_detector(settings, len(participant_ids), detector_dir)
    frames_dir = Path(montage_dir) / "frames" if settings["keep_frames"] else None

    qc: dict[str, Any] = {
        "session_id": recording["session_id"],
        "task": recording["task"],
        "view": recording["view"],
        "video": str(recording.get("video", video)),
        "detector": settings["detector"],
        "tiles": getattr(detector, "tiles", 1),
        "frames_sampled": 0,
        "frames_expected": 0,
        "frames_missed": 0,
        "frames_extra": 0,
        "faces_missed": 0,
        "faces_extra": 0,
        "crops": 0,
        "seconds": 0.0,
        "status": "ok",
        "error": "",
    }
    crops: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    tracker: ParticipantTracker | None = None

    def handle_batch(batch: list) -> None:
        nonlocal tracker
        for frame, detections in zip(batch, detector.detect_batch([frame.image for frame in batch])):
            if tracker is None:
                tracker = ParticipantTracker(len(participant_ids), frame.image.shape[1], frame.image.shape[0])
            qc["frames_sampled"] += 1
            if len(detections) == len(participant_ids):
                qc["frames_expected"] += 1
            elif len(detections) < len(participant_ids):
                qc["frames_missed"] += 1
            else:
                qc["frames_extra"] += 1

            assigned, extras = tracker.assign(detections)
            qc["faces_missed"] += len(participant_ids) - len(assigned)
            qc["faces_extra"] += len(extras)
            for position, detection in assigned:
                participant_id = participant_ids[position]
                crops.append(crop_face(frame.image, detection, image_size, settings["margin"]))
                rows.append(_label_row(recording, participant_id, participants[participant_id], frame, detection))

    try:
        with torch_threads(settings["torch_threads"]):
            batch = []
            for frame in iter_frames(video, settings["fps"], keep_dir=frames_dir):
                batch.append(frame)
                if len(batch) == settings["batch_size"]:
                    handle_batch(batch)
                    batch = []
            handle_batch(batch)
    except VideoReadError as error:
        if settings["on_unreadable"] != "skip":
            raise VideoReadError(
                f"{error}\nTo record unreadable videos in qc.csv and go on, set dyadic_faces.on_unreadable to skip."
            ) from None
        log.warning("skipping %s: %s", video, error)
        qc.update(status="skipped", error=str(error).splitlines()[0], seconds=round(time.perf_counter() - started, 3))
        if montage_dir is not None:
            Path(montage_dir).mkdir(parents=True, exist_ok=True)
        return empty_images(image_size), _empty_labels(), qc

    images = np.stack(crops) if crops else empty_images(image_size)
    labels = pd.DataFrame(rows, columns=list(LABEL_COLUMNS)) if rows else _empty_labels()
    qc["crops"] = len(images)
    qc["status"] = "ok" if len(images) else "no_faces"
    if montage_dir is not None:
        write_montages(images, labels, participant_ids, Path(montage_dir), settings["montage_size"])
    qc["seconds"] = round(time.perf_counter() - started, 3)

    log.info(
        "%s/%s/%s: %d frames sampled, %d faces assigned, %d frames with missed faces (%d faces), "
        "%d frames with extra faces (%d faces), %.1f s",
        qc["session_id"], qc["task"], qc["view"], qc["frames_sampled"], qc["crops"], qc["frames_missed"],
        qc["faces_missed"], qc["frames_extra"], qc["faces_extra"], qc["seconds"],
    )  # fmt: skip
    return images, labels, qc


# ---------------------------------------------------------------------------
# Merging


def merge_recordings(
    images_paths: Sequence[str | Path],
    labels_paths: Sequence[str | Path],
    qc_paths: Sequence[str | Path],
    out_images: str | Path,
    out_labels: str | Path,
    out_qc: str | Path,
) -> None:
    """Concatenate per-recording packs into one pack, and their QC rows into one CSV, in the given order.

    Raises ValueError when the path lists differ in length, when a pack is
    inconsistent, or when packs have different crop sizes.
    """
    if not len(images_paths) == len(labels_paths) == len(qc_paths):
        raise ValueError(
            f"merge needs one labels and one qc file per images file, got {len(images_paths)} images, "
            f"{len(labels_paths)} labels and {len(qc_paths)} qc files"
        )
    if not images_paths:
        raise ValueError("merge needs at least one recording")

    images_list, labels_list = [], []
    for images_path, labels_path in zip(images_paths, labels_paths):
        images, labels = read_pack(images_path, labels_path)
        if images_list and images.shape[1:] != images_list[0].shape[1:]:
            raise ValueError(
                f"crop shape mismatch: {images_path} contains crops of shape {images.shape[1:]} but {images_paths[0]} contains "
                f"{images_list[0].shape[1:]}; rebuild all recordings with one image_size"
            )
        images_list.append(np.asarray(images))
        if len(labels):
            labels_list.append(labels)

    merged_images = np.concatenate(images_list)
    merged_labels = pd.concat(labels_list, ignore_index=True) if labels_list else _empty_labels()
    write_pack(out_images, out_labels, merged_images, merged_labels)

    qc = pd.concat([pd.read_csv(path, keep_default_na=False) for path in qc_paths], ignore_index=True)
    Path(out_qc).parent.mkdir(parents=True, exist_ok=True)
    qc.to_csv(out_qc, index=False)
    log.info("merged %d recordings: %d crops, %s", len(images_paths), len(merged_images), out_images)
