"""``smoothsa_dinov2``: the SmoothSA video recipe of the paper (Zhao et al., arXiv 2508.05417), GPU-sized.

Frozen DINOv2 ViT-S/14 with 4 registers at 224 px (16x16 tokens of 384), shared-Gaussian preheated
queries, 7 slots of 256, Slot Attention 3+1 with bi-level truncation, RandSF.Q transition over 5-frame
windows, the random-order masked Transformer decoder on the frozen features, losses: feature MSE +
0.5 x SlotContrast (tau 0.1) + 100 x preheat MSE; Adam 5e-5, 5 % warm-up, cosine to LR/1000, clip 0.05, batch
8 clips of 5 frames, 50k steps, random crop (75-100 % of the area) and horizontal flip per clip (the YTVIS
recipe). DINOv2 weights come from a local file (``model.encoder.kwargs.weights``, set by ``python -m training.run
--encoder-weights FILE``), never downloaded. Without them the encoder keeps random weights, which is enough to
check that the recipe runs (a few CPU steps); ``training.run`` warns about it.

Data: the recipe targets YTVIS-like real video; pass it with ``--data videos:DIR`` or ``--data davis:ROOT``. The
default spec, ``synthetic:hard``, is only there so the config runs anywhere. Two differences from the paper's
pipeline: frames go to 224 px directly, where the paper resizes to 256 and lets the encoder downscale to 224
bicubically (``image_size=[256, 256]`` does that here too, but bicubic resizing cannot be exported for TensorRT),
and the evaluation scores masks at 224 px, where the paper scores them at 256.
"""

from __future__ import annotations

from training.config import DataConfig, LossTerm, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    """The paper recipe."""
    return TrainConfig(
        name="smoothsa_dinov2",
        model={
            "encoder": {"name": "dinov2", "kwargs": {"weights": None, "input_size": 224}},
            "initializer": "smoothsa_preheat",
            "aggregator": {"name": "slot_attention", "kwargs": {"truncation": "bi_level", "epsilon": 1e-5}},
            "transition": {"name": "randsfq", "kwargs": {"window": 5}},
            "decoder": {"name": "ar_random", "kwargs": {"depth": 4, "num_heads": 4}},
            "num_slots": 7,
            "slot_dim": 256,
            "image_size": [224, 224],
            "first_iters": 3,
            "later_iters": 1,
        },
        losses=[
            LossTerm("reconstruction_mse", 1.0),
            LossTerm("slot_contrast", 0.5, {"temperature": 0.1}),
            LossTerm("preheat_mse", 100.0),
        ],
        data=DataConfig(
            spec="synthetic:hard", clip_length=5, batch_size=8, num_workers=4, val_videos=16, augment="crop_flip"
        ),
        optim=OptimConfig(lr=5e-5, warmup_fraction=0.05, final_lr_fraction=1e-3, grad_clip=0.05),
        steps=50_000,
        eval_every=1250,
        checkpoint_every=1000,
    )
