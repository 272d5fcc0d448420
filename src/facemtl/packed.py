"""Packed image sets: one uint8 array file plus a labels table.

A pack is two files that belong together. ``images.npy`` contains an array of
shape (N, H, W, 3), dtype uint8, RGB channel order. ``labels.csv`` contains N
rows, and row i describes image i. Training and evaluation read packs, so no
JPEG or video is decoded after the preparation stages.

Label columns shared by every pack: ``age`` (years, integer), ``gender``
(0 male, 1 female) and ``ethnicity`` (0 White, 1 Black, 2 Asian, 3 Indian,
4 Others), the encoding of UTKFace file names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GENDERS = ("male", "female")
ETHNICITIES = ("White", "Black", "Asian", "Indian", "Others")


def write_pack(images_path: str | Path, labels_path: str | Path, images: np.ndarray, labels: pd.DataFrame) -> None:
    """Write ``images`` (N, H, W, 3) uint8 and ``labels`` (N rows) as a pack."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"pack images must be uint8 of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"pack has {len(images)} images but {len(labels)} label rows")

    Path(images_path).parent.mkdir(parents=True, exist_ok=True)
    Path(labels_path).parent.mkdir(parents=True, exist_ok=True)
    np.save(images_path, np.ascontiguousarray(images))
    labels.to_csv(labels_path, index=False)


def read_pack(images_path: str | Path, labels_path: str | Path, mmap: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Read a pack, memory-mapping the images unless ``mmap`` is False.

    Raises ValueError when the two files do not belong together.
    """
    images = np.load(images_path, mmap_mode="r" if mmap else None)
    labels = pd.read_csv(labels_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} rows; "
            "rebuild the pack (delete both files and rerun the workflow)"
        )
    return images, labels


def empty_images(image_size: int) -> np.ndarray:
    """Return a (0, image_size, image_size, 3) uint8 array, the images of an empty pack."""
    return np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
