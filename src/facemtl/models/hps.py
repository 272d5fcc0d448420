"""Hard parameter sharing (HPS): convolution blocks shared by all tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from facemtl.models.blocks import Column, feature_size
from facemtl.models.heads import TaskHead
from facemtl.tasks import Task


class HardSharingNet(nn.Module):
    """Network whose ``depth`` shared blocks serve every task, with task columns for the other blocks.

    Placement ``normal`` shares the first ``depth`` blocks: the shared block
    stack feeds one column per task (the remaining blocks), then each task's
    head. Placement ``backwards`` gives each task a column of the first
    ``blocks - depth`` blocks and shares the last ``depth`` blocks. The T
    columns' outputs are concatenated along the channel axis (in task order),
    so the first shared block takes T times the column's channels. Every head then
    reads the same shared features. With ``depth == blocks`` both placements
    are the same network, one shared stack under T heads.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        image_size: int,
        channels: Sequence[int],
        hidden: Sequence[int],
        depth: int,
        placement: str,
    ) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        blocks = len(channels)
        in_features = channels[-1] * feature_size(image_size, blocks) ** 2
        self.placement = placement
        self.concatenate = placement == "backwards" and depth < blocks

        if placement == "normal":
            self.shared = Column(channels, 0, depth - 1, 3)
            task_columns = {task.name: Column(channels, depth, blocks - 1, channels[depth - 1]) for task in tasks}
        else:
            unshared = blocks - depth
            task_columns = {task.name: Column(channels, 0, unshared - 1, 3) for task in tasks}
            shared_in = 3 if unshared == 0 else len(tasks) * channels[unshared - 1]
            self.shared = Column(channels, unshared, blocks - 1, shared_in)

        self.columns = nn.ModuleDict(task_columns)
        self.heads = nn.ModuleDict({task.name: TaskHead(task, in_features, hidden) for task in tasks})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if not self.concatenate:
            shared = self.shared(x)
            return {name: self.heads[name](column(shared)) for name, column in self.columns.items()}

        shared = self.shared(torch.cat([column(x) for column in self.columns.values()], dim=1))
        return {name: head(shared) for name, head in self.heads.items()}
