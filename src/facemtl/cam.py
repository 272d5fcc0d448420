"""Grad-CAM class activation maps for every task of a multitask model.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the feature maps of a
convolution layer by the spatial mean of the gradient of a task's score and
keeps the positive part. The layer is chosen per task so that one function
serves the baseline, HPS and cross-stitch models alike:

* ``last_block`` (default): the input of the last convolution block on the
  task's path, the output of block 4 of 5 after any cross-stitch mixing or
  HPS concatenation. Its side is 4 pixels at image size 100 and 10 at 200.
* ``head``: the input of the task's head, the network's last feature map.
  Its side is 1 pixel at image size 100, where every map is flat, and 4 at 200.

Deeper layers than block 4's output are too coarse at image size 100, and
block 5's convolution output comes before its ReLU, so its negative values
carry no evidence in Grad-CAM's sense.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemtl.models import to_model_input

LAYERS = ("last_block", "head")


def task_score(output: Tensor, kind: str) -> Tensor:
    """Return the scalar score per image (N,) whose gradient Grad-CAM follows.

    Regression uses the predicted value. Classification uses the evidence for
    the predicted class: the logit of class 1 for binary tasks, negated where
    class 0 is predicted, and the logit of the predicted class for multiclass
    tasks. So the maps show where the decision comes from whichever class it is.
    """
    if kind == "multiclass":
        return output.gather(1, output.argmax(dim=1, keepdim=True)).squeeze(1)
    if kind == "binary":
        return output * torch.where(output >= 0, 1.0, -1.0).detach()
    return output


def cam_layer(model: nn.Module, task: str, layer: str = "last_block") -> nn.Module:
    """Return the module whose input is the feature map that Grad-CAM reads for ``task`` (see the module docstring).

    For ``last_block`` this is the deepest convolution block on the task's
    path: the task column's last block when the column reaches the end of the
    stack (baseline, cross-stitch, HPS normal below full depth), and otherwise
    the shared stack's last block (HPS backwards, HPS at full depth).
    """
    if layer not in LAYERS:
        raise ValueError(f"invalid Grad-CAM layer {layer!r}; allowed values: {', '.join(LAYERS)}")
    if task not in model.heads:
        raise ValueError(f"task {task!r} is not one of the model's tasks {list(model.heads)}")
    if layer == "head":
        return model.heads[task]

    stacks = [model.columns[task]]
    if hasattr(model, "shared"):
        stacks.append(model.shared)
    stacks = [stack for stack in stacks if len(stack)]
    return max(stacks, key=lambda stack: stack.last)[-1]


def grad_cam(
    model: nn.Module, settings: dict[str, Any], images: np.ndarray, task: str, layer: str = "last_block"
) -> np.ndarray:
    """Compute Grad-CAM maps of ``task`` for uint8 ``images`` (N, H, W, 3) at ``layer`` (see LAYERS).

    Returns float32 maps (N, H, W) in [0, 1], each divided by its own maximum
    after bilinear upsampling. An image whose map is zero everywhere (no
    positive evidence) stays zero. The model's parameters get no gradient.
    """
    kinds = {name: entry["kind"] for name, entry in settings["tasks"].items()}
    if task not in kinds:
        raise ValueError(f"task {task!r} is not one of the model's tasks {list(kinds)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Grad-CAM needs uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")

    captured: dict[str, Tensor] = {}

    def keep_features(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        captured["features"] = inputs[0]

    device = next(model.parameters()).device
    handle = cam_layer(model, task, layer).register_forward_pre_hook(keep_features)
    try:
        model.eval()
        batch = to_model_input(torch.from_numpy(np.ascontiguousarray(images)).to(device))
        with torch.enable_grad():
            # The input requires a gradient so that the graph reaches the features even for frozen parameters.
            batch.requires_grad_(True)
            outputs = model(batch)
            score = task_score(outputs[task], kinds[task]).sum()
            (gradient,) = torch.autograd.grad(score, captured["features"])
    finally:
        handle.remove()

    features = captured["features"].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((weights * features).sum(dim=1, keepdim=True))
    maps = F.interpolate(maps, size=images.shape[1:3], mode="bilinear", align_corners=False).squeeze(1)

    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).cpu().numpy().astype(np.float32)


def select_faces(labels: pd.DataFrame, count: int, seed: int, split: str | None = None, spread_by: str | None = None) -> np.ndarray:
    """Return ``count`` sorted pack row indices drawn reproducibly with ``seed``.

    With ``split``, only rows of that split are drawn. With ``spread_by``
    (a label column such as ``participant_id``), faces are drawn in turns
    from each value of the column in a shuffled order, so few participants
    cannot fill the selection. Returns fewer rows when fewer exist.
    """
    if count < 0:
        raise ValueError(f"the number of faces must be at least 0, got {count}")
    rows = np.arange(len(labels))
    if split is not None:
        if "split" not in labels.columns:
            raise ValueError(f"labels have no 'split' column, so faces of split {split!r} cannot be selected")
        rows = rows[labels["split"].astype(str).to_numpy() == split]
    rng = np.random.default_rng(seed)
    if spread_by is None or spread_by not in labels.columns:
        return np.sort(rng.permutation(rows)[:count])

    values = labels[spread_by].astype(str).to_numpy()[rows]
    queues = [list(rng.permutation(rows[values == value])) for value in rng.permutation(np.unique(values))]
    chosen: list[int] = []
    while len(chosen) < min(count, len(rows)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a map (H, W) in [0, 1], coloured with matplotlib's jet colormap, over an RGB uint8 image."""
    from matplotlib import colormaps

    colored = colormaps["jet"](heat)[..., :3] * 255.0
    return ((1 - alpha) * image + alpha * colored).clip(0, 255).astype(np.uint8)


def choose_cam_models(table: pd.DataFrame, checkpoints: Sequence[Path | str]) -> tuple[str, dict[str, Path]]:
    """Choose the checkpoints to explain: the baseline, best HPS and best cross-stitch model of one grouping.

    The grouping is the one with the most tasks among ``checkpoints`` (the
    first of them on a tie), and "best" is the highest Δm in
    ``table``, a results table (facemtl.tables). Of several seeds of a
    configuration, the lowest seed's checkpoint is used. Returns the grouping
    and a dict of label (``baseline``, ``best HPS ...``, ``best cross-stitch
    ...``) to checkpoint. A strategy without a checkpoint or Δm is left out.
    """
    from facemtl.plots import SHARING, best_configurations, configuration_label, parse_run_path

    runs = [(run, Path(path)) for path in checkpoints if (run := parse_run_path(path)) is not None]
    if not runs:
        raise ValueError(f"no checkpoint path follows <grouping>/<architecture>/<placement>/<depth>/seed<seed>/: {list(checkpoints)[:3]}")
    grouping = max((run["tasks"] for run, _ in runs), key=lambda name: len(name.split("+")))
    runs = sorted((item for item in runs if item[0]["tasks"] == grouping), key=lambda item: item[0]["seed"])

    chosen: dict[str, Path] = {}
    rows = table[table["tasks"] == grouping]
    candidates = [("baseline", rows[rows["architecture"] == "baseline"].head(1))]
    for architecture, name in SHARING.items():
        candidates.append((f"best {name}", best_configurations(rows, (architecture,))))
    for prefix, selected in candidates:
        for row in selected.itertuples():
            path = next((path for run, path in runs if _is_run_of(run, row)), None)
            if path is not None:
                label = prefix if prefix == "baseline" else f"{prefix}: {configuration_label(row).split(' ', 1)[1]}"
                chosen[label] = path
    return grouping, chosen


def cam_grid(
    models: dict[str, tuple[nn.Module, dict[str, Any]]], images: np.ndarray, layer: str = "last_block"
) -> dict[tuple[str, str], np.ndarray]:
    """Compute Grad-CAM maps of every task of every model for ``images``, keyed by (model label, task)."""
    maps = {}
    for label, (model, settings) in models.items():
        for task in settings["tasks"]:
            maps[(label, task)] = grad_cam(model, settings, images, task, layer)
    return maps


def _is_run_of(run: dict[str, Any], row: Any) -> bool:
    if run["architecture"] != row.architecture:
        return False
    return row.architecture == "baseline" or (run["placement"] == row.placement and int(run["depth"]) == int(row.depth))
