"""``dinov2``: frozen DINOv2 ViT-S/14 with 4 registers, through timm (SmoothSA / RandSF.Q recipe).

Oquab et al., "DINOv2", 2023; Darcet et al., "Vision Transformers Need Registers", ICLR 2024. As used by
Zhao et al. (SmoothSA, RandSF.Q): 224 px input (16x16 patches of 14 px), CLS and register tokens dropped, the
last block's tokens taken *without* the final LayerNorm, backbone frozen and its output detached, then a
trainable pre-LN MLP projection (384 -> 384 -> 384) that Slot Attention reads; the raw tokens are the
reconstruction target.

Weights are never downloaded: pass ``weights`` (a local ``.safetensors`` or ``.pth`` file holding a timm
state dict, e.g. ``vit_small_patch14_reg4_dinov2.lvd142m``); without it the backbone keeps its random
initialisation (enough for tests and export checks, not for real results).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugins.extras import install_command
from plugins.interfaces import Encoder
from plugins.types import EncoderOutput, Frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_ARCHITECTURE = "vit_small_patch14_reg4_dinov2"


class DINOv2Encoder(Encoder):
    """Frozen DINOv2 ViT-S/14-reg4 features + a trainable projection.

    Args:
        image_size: wired by the model; frames are resized bicubically to ``input_size`` when different.
        weights: local path to timm DINOv2 weights; ``None`` keeps random weights.
        input_size: the ViT's input resolution (224 in the papers: 16x16 tokens).
        depth: number of transformer blocks (12 for ViT-S; smaller values only for tests).

    Raises:
        ImportError: timm is not installed.
    """

    name = "dinov2"
    initial_weight_arguments = frozenset({"weights"})

    def __init__(
        self, image_size: tuple[int, int], weights: str | None = None, input_size: int = 224, depth: int = 12
    ) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as error:  # pragma: no cover - the server extra, which models need, installs timm
            raise ImportError(
                f"the dinov2 encoder needs timm, which the server extra installs: {install_command('server')}"
            ) from error
        self.backbone: Any = timm.create_model(
            TIMM_ARCHITECTURE, pretrained=False, img_size=input_size, num_classes=0, depth=depth
        )
        if weights is not None:
            self._load_weights(Path(weights))
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.input_size = input_size
        self.image_size = tuple(image_size)
        backbone: Any = self.backbone
        patch = int(backbone.patch_embed.patch_size[0])
        width = int(backbone.embed_dim)
        self.feature_grid = (input_size // patch, input_size // patch)
        self.raw_dim = width
        self.feature_dim = width
        # per-channel constants [3] -> [1, 3, 1, 1], broadcast over frames [B, 3, H, W]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.project = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        for layer in self.project:
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.bias)  # as the reference model's reset_parameters (Genera1Z/SmoothSA)

    def train(self, mode: bool = True) -> DINOv2Encoder:
        """Switch the projection's mode; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, frames: Frames) -> EncoderOutput:
        """``frames [B, 3, H, W]`` in ``[0, 1]`` -> tokens ``[B, 256, 384]`` at 224 px."""
        if tuple(frames.shape[-2:]) != (self.input_size, self.input_size):
            frames = F.interpolate(frames, size=(self.input_size,) * 2, mode="bicubic", align_corners=False)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        with torch.no_grad():
            x = self.backbone.patch_embed((frames - mean) / std)  # [B, P, C]
            x = self.backbone._pos_embed(x)  # [B, prefix + P, C]
            x = self.backbone.norm_pre(x)
            x = self.backbone.blocks(x)
            raw = x[:, self.backbone.num_prefix_tokens :].detach()  # [B, P, C]: CLS + registers dropped, no final LN
        return EncoderOutput(features=self.project(raw), grid=self.feature_grid, raw=raw)

    def _load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"DINOv2 weights file {path} not found (weights are never downloaded)")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, self.backbone)
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit {TIMM_ARCHITECTURE}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
