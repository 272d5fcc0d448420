"""The no-sharing baseline: one full column and one head per task."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from facemtl.models.blocks import Column, feature_size
from facemtl.models.heads import TaskHead
from facemtl.tasks import Task


class NoSharingNet(nn.Module):
    """Independent single-task networks trained side by side under one total loss.

    ``columns[name]`` holds all convolution blocks of task ``name`` and
    ``heads[name]`` its head. ``forward`` maps images (N, 3, S, S) in [0, 1] to
    a dict of task name to output (see TaskHead for the shapes).
    """

    def __init__(self, tasks: Sequence[Task], image_size: int, channels: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        blocks = len(channels)
        in_features = channels[-1] * feature_size(image_size, blocks) ** 2
        self.columns = nn.ModuleDict({task.name: Column(channels, 0, blocks - 1, 3) for task in tasks})
        self.heads = nn.ModuleDict({task.name: TaskHead(task, in_features, hidden) for task in tasks})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: self.heads[name](column(x)) for name, column in self.columns.items()}
