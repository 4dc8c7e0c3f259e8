"""``broadcast``: the spatial broadcast decoder (Watters et al., 2019) as used by Slot Attention and SAVi.

Each slot is tiled over a small grid, a position embedding is added, and transposed convolutions upsample it
to the output size; every slot predicts RGB plus an alpha logit, and a softmax over slots turns the alphas
into masks that composite the slots' images. One departure: each slot's RGB passes through a sigmoid, so the
reconstruction stays in the ``[0, 1]`` range of the frames; the Slot Attention and SAVi decoders output raw RGB.

Without gradients (serving, evaluation, export) the first layer is folded: tiling a slot and adding the fixed
position embedding is linear in the slot, and so is the layer, so its output is ``slot @ basis + offset`` with
``basis`` (the layer's response to each tiled unit vector) and ``offset`` (its response to the embedding)
computed once per weights. That replaces the largest convolution of a decoder with a small matrix product.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plugins.builtin.decoders.alpha import composite
from plugins.builtin.position import SoftPositionEmbedding
from plugins.interfaces import Decoder
from plugins.types import DecoderOutput, Slots, Tensor, Tokens

_FoldKey = tuple[tuple[int, int], ...]


class SpatialBroadcastDecoder(Decoder):
    """Per-slot CNN decoder to pixels.

    Args:
        slot_dim: wired by the model.
        image_size: wired by the model; the default output size.
        output_size: ``(h, w)`` of the reconstruction and masks; defaults to ``image_size``. A smaller size
            trains faster; masks are upsampled for evaluation and serving.
        broadcast_size: side of the grid each slot is tiled over; ``output_size / broadcast_size`` must be a
            power of two (the number of stride-2 transposed convolutions).
        channels: hidden channels.
        kernel_size: odd kernel size of the upsampling and hidden convolutions (5 in Slot Attention and SAVi; 3
            costs about a third as much at a 32x32 or larger output).

    Raises:
        ValueError: ``output_size`` is not square and a power-of-two multiple of ``broadcast_size``, or
            ``kernel_size`` is not odd and positive.
    """

    name = "broadcast"
    target_kind = "pixels"
    mask_kind = "alpha masks (softmax over slots)"

    def __init__(
        self,
        slot_dim: int,
        image_size: tuple[int, int],
        output_size: tuple[int, int] | list[int] | None = None,
        broadcast_size: int = 8,
        channels: int = 32,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        height, width = (int(output_size[0]), int(output_size[1])) if output_size else tuple(image_size)
        ratio = height // broadcast_size
        if height != width or height % broadcast_size or ratio & (ratio - 1):
            raise ValueError(
                f"broadcast decoder: output_size {(height, width)} must be square and a power-of-two multiple of "
                f"broadcast_size {broadcast_size}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"broadcast decoder: kernel_size must be odd and positive, got {kernel_size}")
        self.target_grid = (height, width)
        self.broadcast_grid = (broadcast_size, broadcast_size)
        self.position = SoftPositionEmbedding(self.broadcast_grid, slot_dim)
        layers: list[nn.Module] = []
        in_channels = slot_dim
        for _ in range(int(math.log2(ratio))):
            upsample = nn.ConvTranspose2d(in_channels, channels, kernel_size, 2, kernel_size // 2, output_padding=1)
            layers += [upsample, nn.ReLU(inplace=True)]  # in place: no second copy of a large activation
            in_channels = channels
        hidden = nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2)
        layers += [hidden, nn.ReLU(inplace=True), nn.Conv2d(channels, 4, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self._folded: tuple[_FoldKey, Tensor, Tensor] | None = None  # (weights key, basis, offset)

    def forward(self, slots: Slots, target: Tokens) -> DecoderOutput:
        """Slots ``[B, K, D]`` -> RGB reconstruction ``[B, h*w, 3]`` in ``[0, 1]`` scale and masks ``[B, K, h, w]``."""
        del target  # Unused: the decoder only reads slots.
        num_slots, slot_dim = slots.shape[1:]
        flat = slots.reshape(-1, slot_dim)  # [B, K, D] -> [B*K, D]; -1, not B*K: a fixed shape in an exported graph
        hidden = self._first_layer(flat) if torch.is_grad_enabled() else self._folded_first_layer(flat)
        for layer in list(self.net)[1:]:
            hidden = layer(hidden)
        decoded = hidden.flatten(2).transpose(1, 2)  # [B*K, 4, h, w] -> [B*K, h*w, 4]
        per_slot = decoded.reshape(-1, num_slots, *decoded.shape[1:])  # [B*K, h*w, 4] -> [B, K, h*w, 4]
        return composite(per_slot, self.target_grid, target_dim=3, content_activation=torch.sigmoid)

    def _first_layer(self, flat: Tensor) -> Tensor:
        """``[N, D]`` slots -> the first layer's output ``[N, C, h1, w1]``, by tiling (the training path)."""
        count, slot_dim = flat.shape
        # [N, D] -> [N, 1, D] -> [N, bh*bw, D]
        tiles = flat.unsqueeze(1).expand(-1, self.broadcast_grid[0] * self.broadcast_grid[1], -1)  # [N, bh*bw, D]
        tiles = self.position(tiles)  # [N, bh*bw, D]
        # [N, bh*bw, D] -> [N, D, bh*bw] -> [N, D, bh, bw]
        tiles = tiles.transpose(1, 2).reshape(count, slot_dim, *self.broadcast_grid)  # [N, D, bh, bw]
        output: Tensor = self.net[0](tiles)
        return output

    def _folded_first_layer(self, flat: Tensor) -> Tensor:
        """The same as :meth:`_first_layer`, as ``flat @ basis + offset`` (see the module docstring)."""
        basis, offset = self._fold()
        # basis [D, C, h1, w1] -> [D, C*h1*w1], offset [C, h1, w1] -> [C*h1*w1]: mapped [N, C*h1*w1]
        mapped = torch.addmm(offset.flatten(), flat, basis.flatten(1))  # [N, D] @ [D, C*h1*w1] + offset
        return mapped.view(-1, *offset.shape)  # [N, C*h1*w1] -> [N, C, h1, w1]

    def _fold(self) -> tuple[Tensor, Tensor]:
        """``basis [D, C, h1, w1]`` and ``offset [C, h1, w1]`` of the first layer, recomputed when the weights of
        the first layer or of the position embedding change (by identity or in place)."""
        parameters = [*self.net[0].parameters(), *self.position.parameters()]
        key = tuple((parameter.data_ptr(), parameter._version) for parameter in parameters)
        if self._folded is None or self._folded[0] != key:
            first = self.net[0]
            dim = self.position.project.out_features
            height, width = self.broadcast_grid
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in any mode
                device, dtype = parameters[0].device, parameters[0].dtype
                units = torch.eye(dim, device=device, dtype=dtype)[:, :, None, None]  # [D, D] -> [D, D, 1, 1]
                # row i is unit vector i, tiled
                units = units.expand(dim, dim, height, width)  # [D, D, 1, 1] -> [D, D, bh, bw]
                zeros = torch.zeros(1, dim, height, width, device=device, dtype=dtype)
                embedding = self.position(zeros.flatten(2).transpose(1, 2))  # [1, D, bh, bw] -> [1, bh*bw, D]
                # [1, bh*bw, D] -> [1, D, bh*bw] -> [1, D, bh, bw]
                embedding = embedding.transpose(1, 2).reshape(1, dim, height, width)  # [1, D, bh, bw]
                basis = first(units) - first(zeros)  # [D, C, h1, w1]: linear part, bias removed
                offset = first(embedding)[0]  # [C, h1, w1]: embedding's response, bias included
            self._folded = (key, basis, offset)
        return self._folded[1], self._folded[2]
