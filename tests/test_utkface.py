"""UTKFace ingestion: name parsing, the split and packing, on generated and real data."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pandas as pd
import pytest

from facemtl import utkface
from facemtl.packed import read_pack, write_pack

AGE_BINS = [3, 13, 20, 30, 40, 50, 60, 70]
STRATIFY = ["age_group", "gender", "ethnicity"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("25_0_2_20170116174525125.jpg.chip.jpg", {"age": 25, "gender": 0, "ethnicity": 2}),
        ("UTKFace/1_1_4_20161221193016140.jpg.chip.jpg", {"age": 1, "gender": 1, "ethnicity": 4}),
        # Oddities of the official archive that do not touch the labels.
        ("24_0_1_20170116220224657 .jpg.chip.jpg", {"age": 24, "gender": 0, "ethnicity": 1}),
        ("28_1_2_201701161846515488.jpg.chip.jpg", {"age": 28, "gender": 1, "ethnicity": 2}),
        ("55_0_0_20170116232725357jpg.chip.jpg", {"age": 55, "gender": 0, "ethnicity": 0}),
    ],
)
def test_parse_name_valid(name, expected):
    labels, reason = utkface.parse_name(name)

    assert reason == ""
    assert {key: labels[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("name", "reason_part"),
    [
        ("39_1_20170116174525125.jpg.chip.jpg", "found 3"),
        ("61_1_20170109142408075.jpg.chip.jpg", "found 3"),
        ("0_0_0_20170116174525125.jpg.chip.jpg", "age"),
        ("abc_0_0_20170116174525125.jpg.chip.jpg", "age"),
        ("30_2_0_20170116174525125.jpg.chip.jpg", "gender"),
        ("30_0_5_20170116174525125.jpg.chip.jpg", "race"),
        ("30_0_1_20170116174525125.png", "not a .jpg"),
    ],
)
def test_parse_name_malformed(name, reason_part):
    labels, reason = utkface.parse_name(name)

    assert labels is None
    assert reason_part in reason


def make_labels(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "file": [f"{index}.jpg" for index in range(count)],
            "age": rng.integers(1, 90, count),
            "gender": rng.integers(0, 2, count),
            "ethnicity": rng.choice(5, count, p=[0.45, 0.2, 0.15, 0.15, 0.05]),
        }
    )


def test_split_deterministic_for_seed():
    labels = make_labels(2000)

    first = utkface.split_faces(labels, 0.1, 0.2, seed=7, stratify=STRATIFY, age_bins=AGE_BINS)
    second = utkface.split_faces(labels, 0.1, 0.2, seed=7, stratify=STRATIFY, age_bins=AGE_BINS)
    other = utkface.split_faces(labels, 0.1, 0.2, seed=8, stratify=STRATIFY, age_bins=AGE_BINS)

    pd.testing.assert_frame_equal(first, second)
    assert not first["split"].equals(other["split"])


def test_split_disjoint_and_complete():
    labels = make_labels(2000)

    split = utkface.split_faces(labels, 0.1, 0.2, seed=1, stratify=STRATIFY, age_bins=AGE_BINS)

    assert len(split) == len(labels)
    assert split["file"].is_unique
    assert set(split["split"]) == {"train", "validation", "test"}
    counts = split["split"].value_counts()
    assert abs(counts["test"] - 400) <= 20
    assert abs(counts["validation"] - 200) <= 20


def test_split_stratified():
    labels = make_labels(5000)

    split = utkface.split_faces(labels, 0.1, 0.2, seed=1, stratify=["gender", "ethnicity"], age_bins=AGE_BINS)

    overall = split["ethnicity"].value_counts(normalize=True)
    for name in ("train", "validation", "test"):
        within = split.loc[split["split"] == name, "ethnicity"].value_counts(normalize=True)
        assert (within - overall).abs().max() < 0.01, name
    shares = pd.crosstab([split["gender"], split["ethnicity"]], split["split"], normalize="index")
    assert (shares["test"] - 0.2).abs().max() < 0.02


def test_split_subset_keeps_splits_of_full_run():
    labels = make_labels(3000)

    full = utkface.split_faces(labels, 0.1, 0.2, seed=3, stratify=STRATIFY, age_bins=AGE_BINS)
    small = utkface.split_faces(labels, 0.1, 0.2, seed=3, stratify=STRATIFY, age_bins=AGE_BINS, subset=600)

    assert abs(len(small) - 600) <= 30
    merged = small.merge(full, on="file", suffixes=("_small", "_full"))
    assert (merged["split_small"] == merged["split_full"]).all()


def test_pack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    labels = pd.DataFrame({"age": [1, 2, 3, 4, 5], "gender": [0, 1, 0, 1, 0], "ethnicity": [0, 1, 2, 3, 4]})

    write_pack(tmp_path / "images.npy", tmp_path / "labels.csv", images, labels)
    loaded_images, loaded_labels = read_pack(tmp_path / "images.npy", tmp_path / "labels.csv")

    np.testing.assert_array_equal(loaded_images, images)
    pd.testing.assert_frame_equal(loaded_labels, labels)


def test_pack_rejects_mismatched_files(tmp_path):
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    write_pack(tmp_path / "images.npy", tmp_path / "labels.csv", images, pd.DataFrame({"age": [1, 2, 3]}))
    pd.DataFrame({"age": [1, 2]}).to_csv(tmp_path / "labels.csv", index=False)

    with pytest.raises(ValueError, match="3 images but .* 2 rows"):
        read_pack(tmp_path / "images.npy", tmp_path / "labels.csv")


def write_face_archive(path, names, size=200):
    """Write a tar.gz in UTKFace's layout with one generated JPEG per name; return the images as RGB."""
    rng = np.random.default_rng(0)
    images = {}
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            image[: size // 2] = (200, 30, 30)  # a flat red band survives JPEG well enough to check channel order
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            assert ok
            member = tarfile.TarInfo(f"UTKFace/{name}")
            member.size = len(data)
            archive.addfile(member, fileobj=io.BytesIO(data.tobytes()))
            images[name] = image
    return images


def test_pack_faces_from_archive(tmp_path):
    names = [f"{20 + index}_{index % 2}_{index % 5}_2017011617452512{index}.jpg.chip.jpg" for index in range(6)]
    names.append("39_1_20170116174525125.jpg.chip.jpg")
    write_face_archive(tmp_path / "UTKFace.tar.gz", names)

    labels, rejects = utkface.read_labels(tmp_path / "UTKFace.tar.gz")
    split = labels.assign(split="train")
    utkface.pack_faces(tmp_path / "UTKFace.tar.gz", split, 100, tmp_path / "images.npy", threads=2)
    images = np.load(tmp_path / "images.npy")

    assert len(labels) == 6
    assert rejects["file"].tolist() == ["39_1_20170116174525125.jpg.chip.jpg"]
    assert images.shape == (6, 100, 100, 3)
    red_band = images[:, 5:40, :, :].reshape(-1, 3).mean(axis=0)
    assert red_band[0] > 150
    assert red_band[2] < 80


def test_pack_faces_reports_missing_face(tmp_path):
    names = ["20_0_0_20170116174525125.jpg.chip.jpg"]
    write_face_archive(tmp_path / "UTKFace.tar.gz", names)
    split = pd.DataFrame({"file": names + ["21_0_0_20170116174525126.jpg.chip.jpg"], "split": "train"})

    with pytest.raises(ValueError, match="1 faces of the split were not found"):
        utkface.pack_faces(tmp_path / "UTKFace.tar.gz", split, 100, tmp_path / "images.npy")


def test_real_archive_labels(utkface_archive):
    labels, rejects = utkface.read_labels(utkface_archive)

    assert len(labels) + len(rejects) == 23708
    assert len(rejects) == 3
    assert rejects["reason"].str.contains("found 3").all()
    assert labels["gender"].isin([0, 1]).all()
    assert labels["ethnicity"].between(0, 4).all()
