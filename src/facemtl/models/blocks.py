"""Convolution blocks and columns, the feature extractors of every model.

The thesis network (Keras) stacks five blocks, each a 3x3 convolution with
valid padding (no padding), ReLU and 2x2 max-pooling with stride 2. A column is
such a stack, or a contiguous part of it, owned by one task or shared by all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

DEFAULT_CHANNELS = (16, 16, 32, 32, 64)
DEFAULT_HIDDEN = (128, 64, 32)
KERNEL_SIZE = 3
POOL_SIZE = 2


class ConvBlock(nn.Sequential):
    """3x3 valid convolution, 2x2 max-pool (stride 2), ReLU.

    Max-pooling runs before the ReLU. The two commute because ReLU is monotonic,
    so the function equals the thesis's conv-ReLU-pool, but the ReLU then
    touches a quarter of the values, which is much faster on CPU.
    Input (N, in_channels, H, W) maps to (N, out_channels, (H - 2) // 2, (W - 2) // 2).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        # NOTE: on CPU, max-pooling forward and backward take about 40 % of a
        # bf16 training step at 200x200 (docs/benchmarks.md), because the
        # convolution's full-resolution output goes through memory. A fused
        # convolution and pooling kernel would avoid that round trip.
        super().__init__(
            nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, padding=0),
            nn.MaxPool2d(POOL_SIZE, stride=POOL_SIZE),
            nn.ReLU(inplace=True),
        )
        self.in_channels = in_channels
        self.out_channels = out_channels


class Column(nn.Sequential):
    """Consecutive ConvBlocks ``first``..``last`` (0-based, inclusive) of the full stack.

    ``channels`` lists the output channels of every block of the full stack,
    and ``in_channels`` is the input channels of block ``first`` (3 for the
    image, or T times the previous block's channels after a channel
    concatenation of T task columns). An empty range gives an identity column.
    """

    def __init__(self, channels: Sequence[int], first: int, last: int, in_channels: int) -> None:
        blocks = []
        for index in range(first, last + 1):
            blocks.append(ConvBlock(in_channels, channels[index]))
            in_channels = channels[index]
        super().__init__(*blocks)
        self.first = first
        self.last = last


def block_output_size(size: int) -> int:
    """Return the side in pixels after one ConvBlock applied to a side of ``size`` pixels."""
    return (size - (KERNEL_SIZE - 1)) // POOL_SIZE


def feature_size(image_size: int, blocks: int) -> int:
    """Return the side in pixels of the feature map after ``blocks`` ConvBlocks (0 if it vanishes)."""
    size = image_size
    for _ in range(blocks):
        size = max(block_output_size(size), 0)
    return size


def min_image_size(blocks: int) -> int:
    """Return the smallest image side in pixels that leaves a 1x1 feature map after ``blocks`` ConvBlocks.

    94 for five blocks: 94 -> 46 -> 22 -> 10 -> 4 -> 1.
    """
    size = 1
    for _ in range(blocks):
        size = size * POOL_SIZE + (KERNEL_SIZE - 1)
    return size


def check_image_size(image_size: int, blocks: int) -> None:
    """Raise ValueError when ``image_size`` is too small for ``blocks`` valid ConvBlocks."""
    minimum = min_image_size(blocks)
    if image_size < minimum:
        raise ValueError(
            f"image_size {image_size} is too small for {blocks} convolution blocks with valid padding "
            f"and 2x2 pooling; the minimum image size is {minimum}"
        )


def init_like_keras(module: nn.Module) -> None:
    """Initialise conv and dense layers as Keras does: Glorot-uniform weights, zero biases.

    The thesis network was trained with these Keras defaults, and PyTorch's own
    defaults (Kaiming-uniform with a=sqrt(5)) give smaller initial weights.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def to_model_input(images: Tensor) -> Tensor:
    """Convert uint8 images (N, H, W, 3) to float model input (N, 3, H, W) in [0, 1].

    The permute is a view, so the result is in channels_last memory format,
    which the oneDNN (CPU) and cuDNN convolutions prefer, without a copy.
    """
    return images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
