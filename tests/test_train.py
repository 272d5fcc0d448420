"""Tests of training, resume and prediction on a tiny generated pack (real torch, real files)."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facemtl.packed import write_pack
from facemtl.predict import load_model, predict
from facemtl import train as train_module
from facemtl.train import resume_path, train_run

SIZE = 94  # smallest image size for five valid blocks
SPLITS = ["train"] * 96 + ["validation"] * 32 + ["test"] * 16
TASKS = {
    "age": {"kind": "regression", "loss": "mse"},
    "gender": {"kind": "binary", "loss": "bce"},
    "ethnicity": {"kind": "multiclass", "classes": 5, "loss": "cross_entropy"},
}

pytestmark = pytest.mark.slow


def make_settings(architecture: str = "baseline", depth: int = 0, placement: str = "none", **training) -> dict:
    settings = {
        "grouping": "age+gender+ethnicity",
        "architecture": architecture,
        "placement": placement,
        "depth": depth,
        "seed": 11,
        "tasks": copy.deepcopy(TASKS),
        "model": {"channels": [16, 16, 32, 32, 64], "hidden": [128, 64, 32]},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "batch_size": 32,
            "max_epochs": 3,
            "patience": 4,
            "loss_weighting": "sum",
            "standardize_age": True,
            "augment_hflip": True,
            "micro_batch": 8,
            "device": "cpu",
            "eval_batch_size": 64,
            **training,
        },
    }
    if architecture == "cross_stitch":
        settings["cross_stitch"] = {"init": "paper", "diagonal": 0.9, "lr_multiplier": 10.0}
    return settings


def run_paths(folder: Path) -> dict[str, Path]:
    return {
        "checkpoint": folder / "model.pt",
        "history": folder / "history.csv",
        "metrics": folder / "metrics.json",
    }


def train(pack: dict[str, Path], folder: Path, settings: dict, baseline: Path | None = None) -> dict[str, Path]:
    paths = run_paths(folder)
    train_run(pack["images"], pack["labels"], settings=settings, baseline=baseline, threads=1, **paths)
    return paths


def read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).drop(columns=["seconds"])


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> dict[str, Path]:
    """Pack of random faces: 96 train, 32 validation and 16 test rows whose labels are missing."""
    folder = tmp_path_factory.mktemp("pack")
    rng = np.random.default_rng(0)
    count = len(SPLITS)
    images = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
    labels = pd.DataFrame(
        {
            "age": rng.integers(1, 90, count).astype(float),
            "gender": rng.integers(0, 2, count).astype(float),
            "ethnicity": rng.integers(0, 5, count).astype(float),
            "split": SPLITS,
        }
    )
    # Training must never read the test split, so its labels are unusable on purpose.
    labels.loc[labels["split"] == "test", ["age", "gender", "ethnicity"]] = np.nan
    write_pack(folder / "images.npy", folder / "labels.csv", images, labels)
    return {"images": folder / "images.npy", "labels": folder / "labels.csv"}


@pytest.fixture(scope="module")
def baseline_run(pack, tmp_path_factory) -> dict[str, Path]:
    return train(pack, tmp_path_factory.mktemp("baseline"), make_settings())


def test_outputs_written_and_well_formed(baseline_run):
    history = pd.read_csv(baseline_run["history"])
    assert list(history["epoch"]) == [1, 2, 3]
    for split in ("train", "validation"):
        assert f"{split}_loss" in history
        assert f"{split}_age_mae" in history
        assert f"{split}_gender_accuracy" in history
        assert f"{split}_ethnicity_accuracy" in history
    assert {"seconds", "learning_rate"} <= set(history.columns)
    assert np.isfinite(history.to_numpy(dtype=float)).all()

    metrics = json.loads(baseline_run["metrics"].read_text())
    assert metrics["epochs_run"] == 3
    assert 1 <= metrics["best_epoch"] <= 3
    assert metrics["validation_loss"] == pytest.approx(history["validation_loss"].min())
    assert set(metrics["validation"]) == {"age", "gender", "ethnicity"}
    assert metrics["device"] == "cpu"
    assert metrics["images_per_second"] > 0

    saved = torch.load(baseline_run["checkpoint"], weights_only=False)
    assert saved["best_epoch"] == metrics["best_epoch"]
    assert saved["settings"]["image_size"] == SIZE
    assert set(saved["settings"]["target_standardization"]) == {"age"}
    assert not resume_path(baseline_run["checkpoint"]).exists()


def test_same_seed_same_history(pack, baseline_run, tmp_path):
    again = train(pack, tmp_path, make_settings())
    pd.testing.assert_frame_equal(read_history(again["history"]), read_history(baseline_run["history"]))

    first = torch.load(baseline_run["checkpoint"], weights_only=False)["state_dict"]
    second = torch.load(again["checkpoint"], weights_only=False)["state_dict"]
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=0)


# bf16 convolutions round differently for other batch shapes, so micro-batches match the whole batch less closely.
@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-4), ("bf16", 2e-3)])
def test_micro_batches_match_whole_batch(pack, tmp_path, precision, rtol):
    whole = train(pack, tmp_path / "whole", make_settings(micro_batch=0, max_epochs=1, cpu_precision=precision))
    micro = train(pack, tmp_path / "micro", make_settings(micro_batch=8, max_epochs=1, cpu_precision=precision))
    pd.testing.assert_frame_equal(
        read_history(micro["history"]), read_history(whole["history"]), check_exact=False, rtol=rtol
    )


def test_bf16_same_seed_same_history(pack, tmp_path):
    first = train(pack, tmp_path / "first", make_settings(cpu_precision="bf16", max_epochs=2))
    second = train(pack, tmp_path / "second", make_settings(cpu_precision="bf16", max_epochs=2))
    history = read_history(first["history"])
    assert np.isfinite(history.to_numpy(dtype=float)).all()
    pd.testing.assert_frame_equal(read_history(second["history"]), history)

    first_weights = torch.load(first["checkpoint"], weights_only=False)["state_dict"]
    second_weights = torch.load(second["checkpoint"], weights_only=False)["state_dict"]
    for key in first_weights:
        assert first_weights[key].dtype == torch.float32, key
        torch.testing.assert_close(second_weights[key], first_weights[key], rtol=0, atol=0)


def test_bf16_loss_close_to_fp32(pack, tmp_path):
    fp32 = train(pack, tmp_path / "fp32", make_settings(cpu_precision="fp32", max_epochs=1))
    bf16 = train(pack, tmp_path / "bf16", make_settings(cpu_precision="bf16", max_epochs=1))
    fp32_first = read_history(fp32["history"]).iloc[0]
    bf16_first = read_history(bf16["history"]).iloc[0]
    # One epoch of bfloat16 rounding moved these losses by about 0.2 % (torch 2.14, this pack), 10 times below the bound.
    for column in ("train_loss", "validation_loss", "validation_age_loss", "validation_ethnicity_loss"):
        assert bf16_first[column] == pytest.approx(fp32_first[column], rel=0.02), column


def test_invalid_cpu_precision_raises(pack, tmp_path):
    with pytest.raises(ValueError, match="invalid training cpu_precision 'fp16'; allowed values: auto, fp32, bf16"):
        train(pack, tmp_path, make_settings(cpu_precision="fp16"))


def test_resume_after_kill_matches_uninterrupted(pack, baseline_run, tmp_path, caplog):
    paths = run_paths(tmp_path)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from facemtl.train import train_run\n"
        "paths = {key: Path(value) for key, value in json.loads(sys.argv[1]).items()}\n"
        "train_run(settings=json.loads(sys.argv[2]), threads=1, **paths)\n"
    )
    arguments = {"images": str(pack["images"]), "labels": str(pack["labels"])}
    arguments.update({key: str(value) for key, value in paths.items()})
    process = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(arguments), json.dumps(make_settings())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    # Kill the run as soon as its first epoch is saved, like a job killed by the scheduler.
    resume_file = resume_path(paths["checkpoint"])
    deadline = time.monotonic() + 60
    while not resume_file.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert resume_file.exists()
    assert not paths["metrics"].exists()

    with caplog.at_level(logging.INFO, logger="facemtl.train"):
        train(pack, tmp_path, make_settings())
    assert "resuming from" in caplog.text
    assert not resume_file.exists()

    pd.testing.assert_frame_equal(read_history(paths["history"]), read_history(baseline_run["history"]))
    resumed = torch.load(paths["checkpoint"], weights_only=False)["state_dict"]
    uninterrupted = torch.load(baseline_run["checkpoint"], weights_only=False)["state_dict"]
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=0)


def test_resume_file_of_other_settings_ignored(pack, baseline_run, tmp_path, caplog):
    paths = run_paths(tmp_path)
    torch.save({"settings_hash": "written by a run with other settings"}, resume_path(paths["checkpoint"]))

    with caplog.at_level(logging.WARNING, logger="facemtl.train"):
        train(pack, tmp_path, make_settings())
    assert "ignoring and deleting resume file" in caplog.text
    pd.testing.assert_frame_equal(read_history(paths["history"]), read_history(baseline_run["history"]))


def test_resume_hash_changes_with_rebuilt_pack(pack, tmp_path):
    images = tmp_path / "images.npy"
    images.write_bytes(pack["images"].read_bytes())
    before = train_module._settings_hash(make_settings(), images, pack["labels"], None)

    # The same bytes written again, as a rerun of the preparation step would, with a later modification time.
    images.write_bytes(pack["images"].read_bytes())
    stat = images.stat()
    os.utime(images, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = train_module._settings_hash(make_settings(), images, pack["labels"], None)

    assert before != after
    assert after == train_module._settings_hash(make_settings(), images, pack["labels"], None)


def test_cross_stitch_starts_from_baseline(pack, baseline_run, tmp_path):
    settings = make_settings("cross_stitch", 2, "normal", max_epochs=1)
    paths = train(pack, tmp_path, settings, baseline=baseline_run["checkpoint"])

    saved = torch.load(paths["checkpoint"], weights_only=False)
    assert saved["settings"]["architecture"] == "cross_stitch"
    assert sorted(key for key in saved["state_dict"] if key.startswith("units.")) == ["units.3.weight", "units.4.weight"]
    assert np.isfinite(pd.read_csv(paths["history"]).to_numpy(dtype=float)).all()


def test_cross_stitch_without_baseline_raises(pack, tmp_path):
    with pytest.raises(ValueError, match="needs the checkpoint of the trained baseline"):
        train(pack, tmp_path, make_settings("cross_stitch", 1, "normal"))


def test_missing_train_label_raises(pack, tmp_path):
    labels = pd.read_csv(pack["labels"])
    labels.loc[3, "gender"] = np.nan
    broken = tmp_path / "labels.csv"
    labels.to_csv(broken, index=False)

    with pytest.raises(ValueError, match=r"labels\.csv: in the train split, 1 value is not 0 or 1 in column 'gender'"):
        train({"images": pack["images"], "labels": broken}, tmp_path, make_settings())


def test_uncertainty_weighting_trains(pack, tmp_path):
    paths = train(pack, tmp_path, make_settings("hps", 2, "backwards", loss_weighting="uncertainty", max_epochs=2))
    history = pd.read_csv(paths["history"])
    assert {"age_log_variance", "gender_log_variance", "ethnicity_log_variance"} <= set(history.columns)
    assert np.isfinite(history.to_numpy(dtype=float)).all()


def test_predict_shapes_and_ranges(baseline_run, pack):
    model, settings = load_model(baseline_run["checkpoint"])
    images = np.load(pack["images"])[:5]
    predictions = predict(model, settings, images, batch_size=2)

    assert predictions["age"].shape == (5,)
    assert np.isfinite(predictions["age"]).all()
    assert predictions["gender"].shape == (5,)
    assert ((predictions["gender"] >= 0) & (predictions["gender"] <= 1)).all()
    assert predictions["ethnicity"].shape == (5, 5)
    np.testing.assert_allclose(predictions["ethnicity"].sum(axis=1), 1.0, rtol=1e-5)

    # Training standardized the ages, so predictions must be de-standardized: years around the train mean, not around 0.
    mean = settings["target_standardization"]["age"]["mean"]
    assert abs(float(np.mean(predictions["age"])) - mean) < 40
    assert not math.isclose(float(np.std(predictions["age"])), 0.0)


def test_predict_rejects_other_image_size(baseline_run):
    model, settings = load_model(baseline_run["checkpoint"])
    with pytest.raises(ValueError, match="trained on 94x94"):
        predict(model, settings, np.zeros((2, 100, 100, 3), dtype=np.uint8))


def test_predict_empty_input(baseline_run):
    model, settings = load_model(baseline_run["checkpoint"])
    predictions = predict(model, settings, np.zeros((0, SIZE, SIZE, 3), dtype=np.uint8))
    assert predictions["age"].shape == (0,)
    assert predictions["ethnicity"].shape == (0, 5)


def test_auto_precision_follows_cpu_support():
    native = train_module._cpu_has_native_bf16()

    assert train_module.resolve_cpu_precision("auto") == ("bf16" if native else "fp32")
    assert train_module.resolve_cpu_precision("fp32") == "fp32"
    assert train_module.resolve_cpu_precision("bf16") == "bf16"
