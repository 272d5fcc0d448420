"""Grad-CAM class activation maps for every task of a multitask model.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the feature maps of a
convolution layer by the spatial mean of the gradient of a task's score and
keeps the positive part. Here the layer is the input of the task's head, the
last feature map that task sees, so one function serves the baseline, HPS and
cross-stitch models alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemtl.models import to_model_input


def task_score(output: Tensor, kind: str) -> Tensor:
    """Return the scalar score per image (N,) whose gradient Grad-CAM follows.

    Regression uses the predicted value, binary the logit of class 1, and
    multiclass the logit of the predicted class.
    """
    if kind == "multiclass":
        return output.gather(1, output.argmax(dim=1, keepdim=True)).squeeze(1)
    return output


def grad_cam(model: nn.Module, settings: dict[str, Any], images: np.ndarray, task: str) -> np.ndarray:
    """Compute Grad-CAM maps of ``task`` for uint8 ``images`` (N, H, W, 3).

    Returns float32 maps (N, H, W) in [0, 1], upsampled bilinearly from the head's
    input, whose side is only 4 pixels for 200x200 images with the default network
    (1 pixel at 100x100, where every map is flat). An image whose map is zero
    everywhere (no positive evidence) stays zero.
    """
    kinds = {name: entry["kind"] for name, entry in settings["tasks"].items()}
    if task not in kinds:
        raise ValueError(f"task {task!r} is not one of the model's tasks {list(kinds)}")

    captured: dict[str, Tensor] = {}

    def keep_features(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        features = inputs[0]
        features.retain_grad()
        captured["features"] = features

    handle = model.heads[task].register_forward_pre_hook(keep_features)
    try:
        model.eval()
        batch = to_model_input(torch.from_numpy(np.ascontiguousarray(images)))
        with torch.enable_grad():
            outputs = model(batch)
            task_score(outputs[task], kinds[task]).sum().backward()
    finally:
        handle.remove()

    features = captured["features"]
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    maps = F.interpolate(maps, size=images.shape[1:3], mode="bilinear", align_corners=False).squeeze(1)

    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).numpy().astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a map (H, W) in [0, 1], coloured with matplotlib's jet colormap, over an RGB uint8 image."""
    from matplotlib import colormaps

    colored = colormaps["jet"](heat)[..., :3] * 255.0
    return ((1 - alpha) * image + alpha * colored).clip(0, 255).astype(np.uint8)
