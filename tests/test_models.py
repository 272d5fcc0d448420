"""Tests of the model zoo: parameter counts, output shapes, sharing wiring and cross-stitch units."""

from __future__ import annotations

import pytest
import torch

from facemtl.models import (
    CrossStitchNet,
    CrossStitchUnit,
    HardSharingNet,
    NoSharingNet,
    build_model,
    load_baseline_weights,
    min_image_size,
)
from facemtl.tasks import task_from_config

SMALL = 94  # smallest image size for five valid blocks: 94 -> 46 -> 22 -> 10 -> 4 -> 1

ARCHITECTURE_CASES = [("baseline", 0, "none")] + [
    (architecture, depth, placement)
    for architecture in ("hps", "cross_stitch")
    for placement in ("normal", "backwards")
    for depth in range(1, 6)
]


@pytest.fixture
def tasks():
    return [
        task_from_config("age", {"kind": "regression"}),
        task_from_config("gender", {"kind": "binary"}),
        task_from_config("ethnicity", {"kind": "multiclass", "classes": 5}),
    ]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_min_image_size_five_blocks():
    assert min_image_size(5) == SMALL


@pytest.mark.parametrize(
    ("architecture", "depth", "placement", "expected"),
    [
        ("baseline", 0, "none", 530_295),
        ("hps", 1, "normal", 529_399),
        ("cross_stitch", 5, "normal", 530_340),
    ],
)
def test_parameter_count_matches_thesis(tasks, architecture, depth, placement, expected):
    model = build_model(architecture, tasks, depth, placement, image_size=200)
    assert count_parameters(model) == expected


def test_hps_full_depth_placements_equal(tasks):
    normal = build_model("hps", tasks, 5, "normal", image_size=SMALL, seed=3)
    backwards = build_model("hps", tasks, 5, "backwards", image_size=SMALL, seed=3)
    assert count_parameters(normal) == count_parameters(backwards)

    x = torch.rand(2, 3, SMALL, SMALL)
    normal_outputs, backwards_outputs = normal(x), backwards(x)
    for task in tasks:
        torch.testing.assert_close(normal_outputs[task.name], backwards_outputs[task.name])


def test_hps_backwards_concatenates_columns(tasks):
    model = build_model("hps", tasks, 2, "backwards", image_size=SMALL)
    first_shared = model.shared[0]
    assert first_shared.in_channels == len(tasks) * 32
    assert len(model.columns["age"]) == 3


@pytest.mark.parametrize(("architecture", "depth", "placement"), ARCHITECTURE_CASES)
def test_output_shapes(tasks, architecture, depth, placement):
    model = build_model(architecture, tasks, depth, placement, image_size=SMALL, seed=0)
    outputs = model(torch.rand(3, 3, SMALL, SMALL))

    assert list(outputs) == ["age", "gender", "ethnicity"]
    assert outputs["age"].shape == (3,)
    assert outputs["gender"].shape == (3,)
    assert outputs["ethnicity"].shape == (3, 5)


@pytest.mark.parametrize(("placement", "depth"), [("normal", 2), ("backwards", 2), ("normal", 5)])
def test_hps_gradients_reach_owning_tasks(tasks, placement, depth):
    model = build_model("hps", tasks, depth, placement, image_size=SMALL, seed=0)
    x = torch.rand(2, 3, SMALL, SMALL)
    shared_ids = {id(parameter) for parameter in model.shared.parameters()}
    reached_by: dict[int, set[str]] = {id(parameter): set() for parameter in model.parameters()}

    for task in tasks:
        model.zero_grad(set_to_none=True)
        model(x)[task.name].float().sum().backward()
        for parameter in model.parameters():
            if parameter.grad is not None and parameter.grad.abs().sum() > 0:
                reached_by[id(parameter)].add(task.name)

    all_names = {task.name for task in tasks}
    for parameter in model.shared.parameters():
        assert reached_by[id(parameter)] == all_names
    for task in tasks:
        for parameter in model.heads[task.name].parameters():
            assert reached_by[id(parameter)] == {task.name}
        # Backwards task columns feed the shared blocks, so every task's loss reaches them.
        column_reached_by = all_names if placement == "backwards" else {task.name}
        for parameter in model.columns[task.name].parameters():
            assert id(parameter) not in shared_ids
            assert reached_by[id(parameter)] == column_reached_by


def test_cross_stitch_paper_init(tasks):
    model = build_model("cross_stitch", tasks, 3, "normal", image_size=SMALL, cross_stitch_diagonal=0.8)
    assert sorted(model.units) == ["2", "3", "4"]
    expected = torch.full((3, 3), 0.1)
    expected.fill_diagonal_(0.8)
    for unit in model.units.values():
        torch.testing.assert_close(unit.weight.data, expected)
        torch.testing.assert_close(unit.weight.data.sum(dim=1), torch.ones(3))


def test_cross_stitch_backwards_positions(tasks):
    model = build_model("cross_stitch", tasks, 2, "backwards", image_size=SMALL)
    assert sorted(model.units) == ["0", "1"]


def test_cross_stitch_uniform_init_seeded(tasks):
    first = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL, cross_stitch_init="uniform", seed=7)
    again = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL, cross_stitch_init="uniform", seed=7)
    other = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL, cross_stitch_init="uniform", seed=8)

    weights = torch.stack([unit.weight.data for unit in first.units.values()])
    assert weights.min() >= 0
    assert weights.max() < 1
    assert not torch.allclose(weights[0], weights[1])
    torch.testing.assert_close(weights, torch.stack([unit.weight.data for unit in again.units.values()]))
    assert not torch.allclose(weights, torch.stack([unit.weight.data for unit in other.units.values()]))


def test_cross_stitch_unit_mixes_columns():
    unit = CrossStitchUnit(2, "paper", 0.75)
    first, second = torch.rand(2, 4, 3, 3), torch.rand(2, 4, 3, 3)
    mixed = unit([first, second])
    torch.testing.assert_close(mixed[0], 0.75 * first + 0.25 * second)
    torch.testing.assert_close(mixed[1], 0.25 * first + 0.75 * second)


def gender_output_after_age_change(model: CrossStitchNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return gender's output before and after a change to the age column's first block only."""
    with torch.no_grad():
        before = model(x)["gender"]
        model.columns["age"][0][0].bias.add_(1.0)
        after = model(x)["gender"]
    return before, after


def test_cross_stitch_mixes_other_column(tasks):
    model = build_model("cross_stitch", tasks, 1, "backwards", image_size=SMALL, seed=0)
    before, after = gender_output_after_age_change(model, torch.rand(2, 3, SMALL, SMALL))
    assert not torch.allclose(before, after)


def test_identity_units_keep_columns_apart(tasks):
    model = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL, seed=0)
    with torch.no_grad():
        for unit in model.units.values():
            unit.weight.copy_(torch.eye(3))
    before, after = gender_output_after_age_change(model, torch.rand(2, 3, SMALL, SMALL))
    torch.testing.assert_close(before, after)


def test_baseline_weights_load_into_cross_stitch(tasks, tmp_path):
    baseline = build_model("baseline", tasks, image_size=SMALL, seed=1)
    checkpoint = tmp_path / "baseline.pt"
    settings = {
        "architecture": "baseline",
        "tasks": {task.name: {"kind": task.kind, "classes": task.classes} for task in tasks},
    }
    torch.save({"state_dict": baseline.state_dict(), "settings": settings, "best_epoch": 1}, checkpoint)

    model = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL, seed=2)
    load_baseline_weights(model, checkpoint)
    with torch.no_grad():
        for unit in model.units.values():
            unit.weight.copy_(torch.eye(3))

    x = torch.rand(2, 3, SMALL, SMALL)
    expected, actual = baseline(x), model(x)
    for task in tasks:
        torch.testing.assert_close(actual[task.name], expected[task.name])


def test_baseline_loading_rejects_other_checkpoints(tasks, tmp_path):
    model = build_model("cross_stitch", tasks, 5, "normal", image_size=SMALL)
    settings = {"tasks": {task.name: {"kind": task.kind} for task in tasks}}

    hps = tmp_path / "hps.pt"
    torch.save(
        {"state_dict": build_model("hps", tasks, 1, "normal", image_size=SMALL).state_dict(),
         "settings": {**settings, "architecture": "hps"}},
        hps,
    )
    with pytest.raises(ValueError, match="not a baseline checkpoint"):
        load_baseline_weights(model, hps)

    pair = tasks[:2]
    other_tasks = tmp_path / "pair.pt"
    torch.save(
        {"state_dict": build_model("baseline", pair, image_size=SMALL).state_dict(),
         "settings": {"architecture": "baseline", "tasks": {task.name: {"kind": task.kind} for task in pair}}},
        other_tasks,
    )
    with pytest.raises(ValueError, match="trained for tasks"):
        load_baseline_weights(model, other_tasks)

    wider = tmp_path / "wider.pt"
    torch.save(
        {"state_dict": build_model("baseline", tasks, image_size=SMALL, hidden=(64, 32)).state_dict(),
         "settings": {**settings, "architecture": "baseline"}},
        wider,
    )
    with pytest.raises(ValueError, match="missing|other layer shapes"):
        load_baseline_weights(model, wider)

    larger = tmp_path / "larger.pt"
    torch.save(
        {"state_dict": build_model("baseline", tasks, image_size=200).state_dict(),
         "settings": {**settings, "architecture": "baseline"}},
        larger,
    )
    with pytest.raises(ValueError, match="other layer shapes"):
        load_baseline_weights(model, larger)


def test_model_classes_by_architecture(tasks):
    assert isinstance(build_model("baseline", tasks, image_size=SMALL), NoSharingNet)
    assert isinstance(build_model("hps", tasks, 1, "normal", image_size=SMALL), HardSharingNet)
    assert isinstance(build_model("cross_stitch", tasks, 1, "normal", image_size=SMALL), CrossStitchNet)


def test_same_seed_same_weights(tasks):
    first = build_model("baseline", tasks, image_size=SMALL, seed=5).state_dict()
    second = build_model("baseline", tasks, image_size=SMALL, seed=5).state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "mtan"}, "invalid architecture 'mtan'; allowed values: baseline, hps, cross_stitch"),
        ({"architecture": "hps", "depth": 1, "placement": "sideways"}, "invalid placement 'sideways'"),
        ({"architecture": "hps", "depth": 0, "placement": "normal"}, "must be 1..5"),
        ({"architecture": "cross_stitch", "depth": 6, "placement": "normal"}, "must be 1..5"),
        ({"architecture": "baseline", "depth": 2, "placement": "none"}, "depth 0 and placement 'none'"),
        ({"architecture": "baseline", "image_size": 93}, "minimum image size is 94"),
        (
            {"architecture": "cross_stitch", "depth": 1, "placement": "normal", "cross_stitch_init": "eye"},
            "invalid cross-stitch init 'eye'",
        ),
    ],
)
def test_invalid_arguments_raise(tasks, kwargs, message):
    arguments = {"depth": 0, "placement": "none", "image_size": SMALL, **kwargs}
    architecture = arguments.pop("architecture")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_model(architecture, tasks, **arguments)


def test_cross_stitch_needs_two_tasks(tasks):
    with pytest.raises(ValueError, match="at least 2 tasks"):
        build_model("cross_stitch", tasks[:1], 1, "normal", image_size=SMALL)
