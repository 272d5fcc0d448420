"""Grad-CAM maps of tiny untrained models of every architecture, and the face selection of the CAM notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facemtl.cam import cam_layer, grad_cam, select_faces
from facemtl.models import build_model
from facemtl.tasks import task_from_config

TASKS = {
    "age": {"kind": "regression", "loss": "mse"},
    "gender": {"kind": "binary", "loss": "bce"},
    "ethnicity": {"kind": "multiclass", "classes": 5, "loss": "cross_entropy"},
}
CHANNELS = (4, 4, 8, 8, 8)
HIDDEN = (8,)
CONFIGURATIONS = [
    ("baseline", "none", 0),
    ("hps", "normal", 2),
    ("hps", "normal", 5),
    ("hps", "backwards", 1),
    ("cross_stitch", "normal", 2),
    ("cross_stitch", "backwards", 5),
]


def tiny_model(architecture: str, placement: str, depth: int, image_size: int = 100):
    tasks = [task_from_config(name, entry) for name, entry in TASKS.items()]
    model = build_model(
        architecture, tasks, depth=depth, placement=placement, image_size=image_size, channels=CHANNELS, hidden=HIDDEN, seed=0
    )
    settings = {"tasks": TASKS, "image_size": image_size}
    return model, settings


def two_faces(image_size: int = 100) -> np.ndarray:
    """Return two different uint8 images: smooth gradients with a bright blob at different places."""
    y, x = np.mgrid[0:image_size, 0:image_size] / image_size
    images = []
    for cx, cy in ((0.3, 0.3), (0.7, 0.6)):
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)
        image = np.stack([0.3 + 0.5 * blob, 0.2 + 0.3 * x, 0.4 * y + 0.4 * blob], axis=-1)
        images.append((255 * image.clip(0, 1)).astype(np.uint8))
    return np.stack(images)


@pytest.mark.parametrize(("architecture", "placement", "depth"), CONFIGURATIONS)
def test_maps_have_image_shape_and_unit_range(architecture, placement, depth):
    model, settings = tiny_model(architecture, placement, depth)
    images = two_faces()

    for task in TASKS:
        maps = grad_cam(model, settings, images, task)

        assert maps.shape == (2, 100, 100)
        assert maps.dtype == np.float32
        assert maps.min() >= 0.0
        assert maps.max() <= 1.0 + 1e-6


@pytest.mark.parametrize(("architecture", "placement", "depth"), CONFIGURATIONS)
def test_maps_differ_between_faces(architecture, placement, depth):
    model, settings = tiny_model(architecture, placement, depth)

    maps = grad_cam(model, settings, two_faces(), "age")

    assert maps.max() > 0, "every map is zero, so the test says nothing about the input"
    assert not np.allclose(maps[0], maps[1], atol=1e-3)


def test_maps_independent_of_batch():
    model, settings = tiny_model("cross_stitch", "normal", 2)
    images = two_faces()

    together = grad_cam(model, settings, images, "ethnicity")
    alone = grad_cam(model, settings, images[1:], "ethnicity")

    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)


def test_last_block_is_spatial_where_head_is_flat():
    # At image size 100 the head's input is 1x1, so its maps are constant; block 4's output is 4x4.
    model, settings = tiny_model("baseline", "none", 0)
    images = two_faces()

    head = grad_cam(model, settings, images, "age", layer="head")
    block = grad_cam(model, settings, images, "age", layer="last_block")

    assert np.ptp(head[0]) < 1e-5
    assert np.ptp(block[0]) > 0.05


def test_model_parameters_get_no_gradient():
    model, settings = tiny_model("hps", "normal", 2)

    grad_cam(model, settings, two_faces(), "gender")

    assert all(parameter.grad is None for parameter in model.parameters())


def test_cam_layer_follows_task_path():
    baseline, _ = tiny_model("baseline", "none", 0)
    hps_backwards, _ = tiny_model("hps", "backwards", 2)
    hps_full, _ = tiny_model("hps", "normal", 5)

    assert cam_layer(baseline, "gender") is baseline.columns["gender"][-1]
    assert cam_layer(hps_backwards, "gender") is hps_backwards.shared[-1]
    assert cam_layer(hps_full, "age") is hps_full.shared[-1]
    assert cam_layer(baseline, "age", layer="head") is baseline.heads["age"]


def test_invalid_layer_and_task_rejected():
    model, settings = tiny_model("baseline", "none", 0)

    with pytest.raises(ValueError, match="invalid Grad-CAM layer 'block9'"):
        grad_cam(model, settings, two_faces(), "age", layer="block9")
    with pytest.raises(ValueError, match="task 'height' is not one of the model's tasks"):
        grad_cam(model, settings, two_faces(), "height")


def test_select_faces_reproducible_and_in_split():
    labels = pd.DataFrame({"split": ["train", "test"] * 50, "participant_id": [f"P{i % 5}" for i in range(100)]})

    first = select_faces(labels, 6, seed=3, split="test")
    second = select_faces(labels, 6, seed=3, split="test")
    other = select_faces(labels, 6, seed=4, split="test")

    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert set(labels["split"].iloc[first]) == {"test"}
    assert len(first) == 6


def test_select_faces_spreads_over_participants():
    labels = pd.DataFrame({"participant_id": ["P1"] * 90 + ["P2"] * 5 + ["P3"] * 5})

    rows = select_faces(labels, 3, seed=0, spread_by="participant_id")

    assert sorted(labels["participant_id"].iloc[rows]) == ["P1", "P2", "P3"]


def test_select_faces_returns_all_when_too_few():
    labels = pd.DataFrame({"participant_id": ["P1", "P2"]})

    assert select_faces(labels, 6, seed=0, spread_by="participant_id").tolist() == [0, 1]
