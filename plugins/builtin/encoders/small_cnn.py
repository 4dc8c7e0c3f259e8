"""``small_cnn``: a SAVi-S-sized convolutional encoder trained from scratch (the CPU default).

Kipf et al., "Conditional Object-Centric Learning from Video" (SAVi), ICLR 2022: 4 convolutions of 5x5 with
32 channels, a soft position embedding, then a LayerNorm + MLP. Strides are configurable so CPU models can
run Slot Attention on a coarser grid than the image.
"""

from __future__ import annotations

from torch import nn

from plugins.builtin.position import SoftPositionEmbedding
from plugins.interfaces import Encoder
from plugins.types import EncoderOutput, Frames


class SmallCNNEncoder(Encoder):
    """Convolutions + soft position embedding + LayerNorm/MLP projection.

    Args:
        image_size: wired by the model.
        channels: output channels of each convolution.
        strides: stride of each convolution (same length as ``channels``).
        kernel_size: odd convolution kernel size (padding ``kernel_size // 2`` keeps ``ceil(H / stride)``).
        out_dim: width of the projected tokens (``Df``).

    Raises:
        ValueError: ``channels`` and ``strides`` are empty or differ in length, or ``kernel_size`` is not odd and
            positive.
    """

    name = "small_cnn"

    def __init__(
        self,
        image_size: tuple[int, int],
        channels: tuple[int, ...] | list[int] = (32, 32, 32, 32),
        strides: tuple[int, ...] | list[int] = (1, 1, 1, 1),
        kernel_size: int = 5,
        out_dim: int = 64,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"channels {channels} and strides {strides} must be non-empty and of equal length")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"small_cnn: kernel_size must be odd and positive, got {kernel_size}")
        layers: list[nn.Module] = []
        in_channels = 3
        height, width = image_size
        for index, (out_channels, stride) in enumerate(zip(channels, strides, strict=True)):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2))
            if index < len(channels) - 1:
                layers.append(nn.ReLU(inplace=True))  # in place: no second copy of a large activation
            in_channels = out_channels
            height, width = (height + stride - 1) // stride, (width + stride - 1) // stride
        self.convs = nn.Sequential(*layers)
        self.feature_grid = (height, width)
        self.raw_dim = in_channels
        self.feature_dim = out_dim
        self.position = SoftPositionEmbedding(self.feature_grid, in_channels)
        self.project = nn.Sequential(
            nn.LayerNorm(in_channels), nn.Linear(in_channels, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, frames: Frames) -> EncoderOutput:
        """``frames [B, 3, H, W]`` in ``[0, 1]`` -> tokens ``[B, h*w, out_dim]``."""
        feature_map = self.convs(frames * 2.0 - 1.0)  # [B, C, h, w]
        tokens = feature_map.flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
        tokens = self.position(tokens.relu())
        return EncoderOutput(features=self.project(tokens), grid=self.feature_grid, raw=tokens)
