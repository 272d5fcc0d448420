"""Cross-stitch networks (Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from facemtl.models.blocks import Column, feature_size
from facemtl.models.heads import TaskHead
from facemtl.tasks import Task

CROSS_STITCH_INITS = ("paper", "uniform")


class CrossStitchUnit(nn.Module):
    """Learned linear mix of the T task columns' activations at one depth.

    The unit has one T x T matrix ``weight`` (A) and maps the columns'
    activations x_1..x_T, each (N, C, H, W), to x'_i = sum_j A[i, j] x_j.
    Init ``paper`` puts ``diagonal`` on the diagonal and (1 - diagonal) / (T - 1)
    elsewhere, so each row sums to 1. Init ``uniform`` draws every entry from
    U[0, 1) with torch's global generator, as the thesis did, so seed torch
    first for a reproducible draw.
    """

    def __init__(self, tasks: int, init: str = "paper", diagonal: float = 0.9) -> None:
        super().__init__()
        if tasks < 2:
            raise ValueError(f"a cross-stitch unit mixes at least 2 task columns, got {tasks}")
        if init == "paper":
            off_diagonal = (1.0 - diagonal) / (tasks - 1)
            weight = torch.full((tasks, tasks), off_diagonal)
            weight.fill_diagonal_(diagonal)
        elif init == "uniform":
            weight = torch.rand(tasks, tasks)
        else:
            raise ValueError(f"invalid cross-stitch init {init!r}; allowed values: {', '.join(CROSS_STITCH_INITS)}")
        self.weight = nn.Parameter(weight)

    def forward(self, columns: Sequence[Tensor]) -> list[Tensor]:
        # One (T, T) x (T, N*H*W*C) matrix product reads and writes each activation
        # once, where T*T scaled additions would pass over them T*T times. The
        # permute to NHWC is a view for channels_last activations, and the outputs
        # are channels_last views again.
        batch, channels, height, width = columns[0].shape
        flat = torch.stack([column.permute(0, 2, 3, 1).reshape(-1) for column in columns])
        mixed = self.weight @ flat
        return [row.view(batch, height, width, channels).permute(0, 3, 1, 2) for row in mixed]


class CrossStitchNet(nn.Module):
    """One column and one head per task, with cross-stitch units after ``depth`` of the blocks.

    Placement ``normal`` puts a unit after each of the deepest ``depth`` blocks
    (for five blocks and depth 2, after blocks 4 and 5). Placement ``backwards``
    puts one after each of the first ``depth`` blocks. Columns and heads have the same module
    names and shapes as NoSharingNet's, so a trained baseline loads into them
    (see load_baseline_weights). ``units`` maps the 0-based index of the block
    that a unit follows, as a string, to the unit.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        image_size: int,
        channels: Sequence[int],
        hidden: Sequence[int],
        depth: int,
        placement: str,
        init: str = "paper",
        diagonal: float = 0.9,
    ) -> None:
        super().__init__()
        blocks = len(channels)
        in_features = channels[-1] * feature_size(image_size, blocks) ** 2
        self.columns = nn.ModuleDict({task.name: Column(channels, 0, blocks - 1, 3) for task in tasks})
        self.heads = nn.ModuleDict({task.name: TaskHead(task, in_features, hidden) for task in tasks})

        positions = range(blocks - depth, blocks) if placement == "normal" else range(depth)
        self.units = nn.ModuleDict({str(index): CrossStitchUnit(len(tasks), init, diagonal) for index in positions})
        self.blocks = blocks
        self.tasks = tuple(tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        names = list(self.columns)
        activations = [x] * len(names)
        for index in range(self.blocks):
            activations = [self.columns[name][index](activation) for name, activation in zip(names, activations)]
            unit = self.units[str(index)] if str(index) in self.units else None
            if unit is not None:
                activations = unit(activations)
        return {name: self.heads[name](activation) for name, activation in zip(names, activations)}

    def unit_parameters(self) -> list[nn.Parameter]:
        """Return the cross-stitch matrices, which training gives their own learning rate."""
        return list(self.units.parameters())


def load_baseline_weights(model: CrossStitchNet, checkpoint: str | Path) -> None:
    """Copy the columns and heads of a trained NoSharingNet checkpoint into ``model``.

    The cross-stitch units keep their initial values. Raises ValueError when
    the checkpoint is not a baseline of the same tasks (names, kinds, classes),
    channels, hidden widths and image size, or when any shape differs.
    """
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    settings = saved.get("settings", {}) if isinstance(saved, dict) else {}
    if settings.get("architecture") != "baseline":
        raise ValueError(
            f"{checkpoint} is not a baseline checkpoint (architecture {settings.get('architecture')!r}); "
            "a cross-stitch model starts from the trained no-sharing baseline of the same grouping"
        )

    saved_kinds = {name: entry.get("kind") for name, entry in settings.get("tasks", {}).items()}
    model_kinds = {task.name: task.kind for task in model.tasks}
    if saved_kinds != model_kinds:
        raise ValueError(
            f"baseline checkpoint {checkpoint} was trained for tasks {saved_kinds}, but this cross-stitch "
            f"model has tasks {model_kinds}; train the baseline of the same grouping first"
        )

    state = saved["state_dict"]
    own = model.state_dict()
    expected = {key for key in own if key.startswith(("columns.", "heads."))}
    missing = sorted(expected - state.keys())
    unexpected = sorted(key for key in state if key not in expected)
    if missing or unexpected:
        raise ValueError(
            f"baseline checkpoint {checkpoint} does not match this cross-stitch model's tasks "
            f"{list(model.columns)}: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "train the baseline of the same grouping first"
        )

    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)}, model {tuple(own[key].shape)}"
        for key in sorted(expected)
        if state[key].shape != own[key].shape
    ]
    if mismatched:
        raise ValueError(
            f"baseline checkpoint {checkpoint} has other layer shapes than this cross-stitch model "
            f"(different tasks' classes, channels, hidden widths or image size): {'; '.join(mismatched[:5])}"
        )

    model.load_state_dict(state, strict=False)
