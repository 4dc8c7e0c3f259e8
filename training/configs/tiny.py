"""``tiny``: a seconds-long run on ``synthetic:easy`` at 32x32, used by tests and quick checks.

Same model family as ``smoothsa_cnn`` (preheater, 3+1 iterations, RandSF.Q, broadcast decoder) at toy size.
It is not expected to learn anything useful in its default 20 steps.
"""

from __future__ import annotations

from training.config import DataConfig, LossTerm, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    """The tiny experiment."""
    return TrainConfig(
        name="tiny",
        model={
            "encoder": {"name": "small_cnn", "kwargs": {"channels": [16, 16], "strides": [2, 2], "out_dim": 32}},
            "initializer": "smoothsa_preheat",
            "aggregator": {"name": "slot_attention", "kwargs": {"truncation": "bi_level"}},
            "transition": {"name": "randsfq", "kwargs": {"window": 3}},
            "decoder": {"name": "broadcast", "kwargs": {"output_size": [16, 16], "broadcast_size": 4, "channels": 16}},
            "num_slots": 4,
            "slot_dim": 32,
            "image_size": [32, 32],
            "first_iters": 3,
            "later_iters": 1,
        },
        losses=[LossTerm("reconstruction_mse", 1.0), LossTerm("preheat_mse", 100.0)],
        data=DataConfig(spec="synthetic:easy", clip_length=3, batch_size=2, val_videos=2, val_frames=4),
        optim=OptimConfig(lr=1e-3, grad_clip=1.0),
        steps=20,
        eval_every=10,
        checkpoint_every=10,
        log_every=5,
    )
