"""Prediction with a trained checkpoint on uint8 face images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facemtl.models import model_from_settings, tasks_from_settings
from facemtl.models.blocks import to_model_input


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by facemtl.train and return the model in eval mode and the run's settings.

    The settings are the resolved training settings, including ``image_size``
    and, for standardized regression tasks, ``target_standardization``.
    """
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or "state_dict" not in saved or "settings" not in saved:
        raise ValueError(f"{checkpoint} is not a facemtl training checkpoint (expected keys state_dict and settings)")

    settings = saved["settings"]
    model = model_from_settings(settings)
    model.load_state_dict(saved["state_dict"])
    model.to(torch.device(device), memory_format=torch.channels_last)
    model.eval()
    return model, settings


@torch.no_grad()
def predict(
    model: nn.Module,
    settings: dict[str, Any],
    images: np.ndarray,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Predict every task for uint8 RGB images (N, H, W, 3) with H == W == the model's image_size.

    Returns a dict of task name to predictions. A regression task gets the
    value in the label's unit, (N,) float64, de-standardized when training
    standardized it. A binary task gets the probability of class 1, (N,), and a
    multiclass task the class probabilities, (N, C).
    """
    image_size = int(settings["image_size"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"predict needs uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    if images.shape[1:3] != (image_size, image_size):
        raise ValueError(
            f"images are {images.shape[1]}x{images.shape[2]} but the model was trained on "
            f"{image_size}x{image_size}; resize them or use a model trained at that size"
        )

    tasks = tasks_from_settings(settings)
    standardization = settings.get("target_standardization") or {}
    target_device = torch.device(device)
    model.eval()

    parts: dict[str, list[np.ndarray]] = {task.name: [] for task in tasks}
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(target_device)
        outputs = model(to_model_input(batch))
        for task in tasks:
            output = outputs[task.name].float()
            if task.kind == "binary":
                output = torch.sigmoid(output)
            elif task.kind == "multiclass":
                output = torch.softmax(output, dim=1)
            parts[task.name].append(output.cpu().numpy())

    predictions = {}
    for task in tasks:
        empty_shape = (0, task.classes) if task.kind == "multiclass" else (0,)
        values = np.concatenate(parts[task.name]) if parts[task.name] else np.zeros(empty_shape, dtype=np.float32)
        if task.kind == "regression":
            values = values.astype(np.float64)
            if task.name in standardization:
                values = values * standardization[task.name]["std"] + standardization[task.name]["mean"]
        predictions[task.name] = values
    return predictions
