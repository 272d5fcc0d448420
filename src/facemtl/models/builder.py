"""Construction of a model from its architecture name and settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from facemtl.models.baseline import NoSharingNet
from facemtl.models.blocks import DEFAULT_CHANNELS, DEFAULT_HIDDEN, check_image_size, init_like_keras
from facemtl.models.cross_stitch import CROSS_STITCH_INITS, CrossStitchNet
from facemtl.models.hps import HardSharingNet
from facemtl.tasks import Task, task_from_config

ARCHITECTURES = ("baseline", "hps", "cross_stitch")
PLACEMENTS = ("normal", "backwards")


def build_model(
    architecture: str,
    tasks: Sequence[Task],
    depth: int = 0,
    placement: str = "none",
    image_size: int = 200,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    cross_stitch_init: str = "paper",
    cross_stitch_diagonal: float = 0.9,
    seed: int | None = None,
) -> nn.Module:
    """Build a freshly initialised multitask model whose forward returns a dict keyed by task name.

    ``architecture`` is ``baseline`` (depth 0, placement ``none``), ``hps``
    (``depth`` shared blocks) or ``cross_stitch`` (``depth`` cross-stitch
    units), the last two with placement ``normal`` or ``backwards``. Conv and
    dense weights get the Keras defaults (see init_like_keras). With ``seed``,
    torch's global generator is seeded first, so the same seed gives the same
    weights, cross-stitch ``uniform`` draws included. Raises ValueError naming
    the invalid argument and its allowed values.
    """
    _validate(architecture, tasks, depth, placement, image_size, channels, hidden, cross_stitch_init)
    if seed is not None:
        torch.manual_seed(seed)

    channels = [int(width) for width in channels]
    hidden = [int(width) for width in hidden]
    if architecture == "baseline":
        model: nn.Module = NoSharingNet(tasks, image_size, channels, hidden)
    elif architecture == "hps":
        model = HardSharingNet(tasks, image_size, channels, hidden, depth, placement)
    else:
        model = CrossStitchNet(
            tasks, image_size, channels, hidden, depth, placement, cross_stitch_init, cross_stitch_diagonal
        )

    init_like_keras(model)
    return model


def _validate(
    architecture: str,
    tasks: Sequence[Task],
    depth: int,
    placement: str,
    image_size: int,
    channels: Sequence[int],
    hidden: Sequence[int],
    cross_stitch_init: str,
) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"invalid architecture {architecture!r}; allowed values: {', '.join(ARCHITECTURES)}")
    if not tasks:
        raise ValueError("a model needs at least one task, got none")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    if not channels or any(int(width) < 1 for width in channels):
        raise ValueError(f"channels must list at least one positive width per convolution block, got {list(channels)}")
    if any(int(width) < 1 for width in hidden):
        raise ValueError(f"hidden widths must be positive, got {list(hidden)}")

    blocks = len(channels)
    if architecture == "baseline":
        if depth != 0 or placement != "none":
            raise ValueError(
                f"the baseline shares nothing, so it takes depth 0 and placement 'none', "
                f"got depth {depth} and placement {placement!r}"
            )
    else:
        if placement not in PLACEMENTS:
            raise ValueError(
                f"invalid placement {placement!r} for {architecture}; allowed values: {', '.join(PLACEMENTS)}"
            )
        if not 1 <= depth <= blocks:
            unit_name = "shared blocks" if architecture == "hps" else "cross-stitch units"
            raise ValueError(f"invalid depth {depth} for {architecture}: the number of {unit_name} must be 1..{blocks}")

    if architecture == "cross_stitch":
        if len(tasks) < 2:
            raise ValueError(f"a cross-stitch network needs at least 2 tasks, got {names}")
        if cross_stitch_init not in CROSS_STITCH_INITS:
            raise ValueError(
                f"invalid cross-stitch init {cross_stitch_init!r}; allowed values: {', '.join(CROSS_STITCH_INITS)}"
            )

    check_image_size(image_size, blocks)


def tasks_from_settings(settings: dict[str, Any]) -> list[Task]:
    """Return the Tasks of a run's ``tasks`` settings (task name -> config entry), in order."""
    return [task_from_config(name, entry) for name, entry in settings["tasks"].items()]


def model_from_settings(settings: dict[str, Any], seed: int | None = None) -> nn.Module:
    """Build the model that a run's resolved settings describe (see facemtl.train for the keys)."""
    cross_stitch = settings.get("cross_stitch") or {}
    model_widths = settings.get("model") or {}
    return build_model(
        architecture=settings["architecture"],
        tasks=tasks_from_settings(settings),
        depth=int(settings.get("depth", 0)),
        placement=settings.get("placement", "none"),
        image_size=int(settings["image_size"]),
        channels=model_widths.get("channels", DEFAULT_CHANNELS),
        hidden=model_widths.get("hidden", DEFAULT_HIDDEN),
        cross_stitch_init=cross_stitch.get("init", "paper"),
        cross_stitch_diagonal=float(cross_stitch.get("diagonal", 0.9)),
        seed=seed,
    )
