"""Task heads: the dense layers that turn a feature map into one task's output."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from facemtl.tasks import Task


class TaskHead(nn.Module):
    """Flatten, dense layers of widths ``hidden`` with ReLU, then the task's output layer.

    The output layer has ``task.outputs`` linear units: one for regression (the
    value), one for binary (the logit of class 1), ``task.classes`` for
    multiclass (logits). ``forward`` maps (N, C, H, W) features with
    C * H * W == ``in_features`` to (N,) for regression and binary tasks and
    to (N, classes) for multiclass tasks.
    """

    def __init__(self, task: Task, in_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU(inplace=True)]
            width = units
        layers.append(nn.Linear(width, task.outputs))
        self.layers = nn.Sequential(*layers)
        self.squeeze = task.kind != "multiclass"

    def forward(self, features: Tensor) -> Tensor:
        output = self.layers(features)
        return output.squeeze(-1) if self.squeeze else output
