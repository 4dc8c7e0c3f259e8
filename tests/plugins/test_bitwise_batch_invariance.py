"""On one torch thread (the server's default, ``--torch-threads 1``) every shipped model computes a frame's
outputs bitwise alike whether it runs alone or batched with other streams' frames, on the first frame and on later
ones. A recurrent model carries any rounding difference into other slot assignments, so a stream's results would
otherwise depend on which other streams shared its model calls: the RandSF.Q transition's self-attention rounded a
batch of one otherwise than larger batches (about 1e-6), and over 100 frames a stream served beside others drifted
to a slot difference of 2.8 from the same stream run alone. (With more torch threads the CPU kernels split their
work by batch size, and rounding may differ again.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from plugins import VideoSlotModel
from training.configs import available, get_config

BATCH = 3


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tensors(value: object) -> list[torch.Tensor]:
    """Every batch-first tensor of a model output or state, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors(item)]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        return []
    return [tensor for name in fields for tensor in _tensors(getattr(value, name))]


@pytest.mark.parametrize("name", available())
def test_a_frame_alone_and_in_a_batch_gives_the_same_bits(name: str, one_thread: None) -> None:
    torch.manual_seed(0)
    model = VideoSlotModel(**get_config(name).model).eval()
    height, width = model.image_size
    first_frames, next_frames = torch.rand(BATCH, 3, height, width), torch.rand(BATCH, 3, height, width)
    with torch.inference_mode():
        batched_first, batched_state = model.first_step(first_frames)
        batched_next, _ = model.step(next_frames, batched_state)
        for row in range(BATCH):
            alone_first, alone_state = model.first_step(first_frames[row : row + 1])
            alone_next, _ = model.step(next_frames[row : row + 1], alone_state)
            alone = _tensors((alone_first, alone_state, alone_next))
            batched = _tensors((batched_first, batched_state, batched_next))
            assert len(alone) == len(batched) > 0
            for single, together in zip(alone, batched, strict=True):
                if single.dim() and together.shape[0] == BATCH * single.shape[0]:  # batch-first ([B*K, ...] too)
                    rows = together.reshape(BATCH, *single.shape)[row]  # [B*n, ...] -> [B, n, ...] -> row
                    assert torch.equal(single, rows), f"{name}: row {row} alone differs from its batch"
