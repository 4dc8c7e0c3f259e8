"""``plugins.segmentation.segment``: argmax over slots with near-ties given to the lowest-numbered slot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins.segmentation import SEGMENTATION_TIE_TOLERANCE, near_ties, segment, segment_uint8


def _pixels(*columns: list[float]) -> torch.Tensor:
    """One ``[K, 1, P]`` mask stack from per-pixel lists of K slot values."""
    return torch.tensor(columns).T[:, None, :]  # [P, K] -> [K, 1, P]


def test_a_clear_maximum_wins_and_near_ties_go_to_the_lowest_slot():
    masks = _pixels(
        [0.2, 0.7, 0.1],  # clear winner: slot 1
        [0.49998, 0.50003, 0.0],  # slot 1 larger by 5e-5: a tie, slot 0
        [0.0, 0.5, 0.5 + 2e-5],  # slots 1 and 2 tie: slot 1
        [0.3, 0.35, 0.35],  # exact tie: the first, like argmax
        [0.4, 0.3, 0.4003],  # 3e-4 apart: no tie, slot 2
    )
    assert segment(masks).flatten().tolist() == [1, 0, 1, 1, 2]


def test_zero_tolerance_is_argmax_and_batch_axes_are_kept():
    masks = torch.rand(2, 3, 5, 4, 6).softmax(dim=-3)  # [B, T, K, H, W]
    labels = segment(masks, tie_tolerance=0.0)
    assert labels.shape == (2, 3, 4, 6) and labels.dtype == torch.int64
    torch.testing.assert_close(labels, masks.argmax(dim=-3))


def test_default_tolerance_is_the_export_soft_mask_bound():
    from training.export.parity import FP32_MAX_ABS

    assert SEGMENTATION_TIE_TOLERANCE == FP32_MAX_ABS


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="tie_tolerance must be >= 0, got -1"):
        segment(torch.zeros(2, 1, 1), tie_tolerance=-1)


def test_near_ties_mark_the_pixels_the_tie_rule_decides():
    masks = _pixels([0.2, 0.7, 0.1], [0.49998, 0.50003, 0.0], [0.4, 0.3, 0.4003], [0.3, 0.35, 0.35])
    assert near_ties(masks).flatten().tolist() == [False, True, False, True]
    assert not near_ties(torch.ones(1, 2, 3)).any()  # one slot: nothing to tie with


@pytest.mark.parametrize("shape", [(6, 33, 47), (3, 5, 8, 9), (1, 4, 4)])
def test_segment_uint8_is_segment_as_uint8(shape) -> None:
    """The service's fast path gives the same map, ties within the tolerance, exact ties and NaN columns included."""
    generator = torch.Generator().manual_seed(5)
    masks = torch.rand(shape, generator=generator).softmax(dim=-3)  # [..., K, H, W]
    flat = masks.view(-1, *shape[-3:])  # [N, K, H, W]
    flat[0, :, 0, :] = 1.0 / shape[-3]  # an exact tie across a row
    if shape[-3] > 1:
        flat[0, 1, 1, :] = flat[0, 0, 1, :] + 5e-5  # near-ties: the lower slot wins
        flat[0, 1, 2, :] = flat[0, 0, 2, :] + 2e-4  # beyond the tolerance: the larger wins
    flat[-1, :, -1, -1] = float("nan")
    expected = segment(masks).to(torch.uint8).numpy()
    np.testing.assert_array_equal(segment_uint8(masks), expected)
    np.testing.assert_array_equal(segment_uint8(masks, 0.0), segment(masks, 0.0).to(torch.uint8).numpy())


def test_segment_uint8_refuses_what_uint8_cannot_hold() -> None:
    with pytest.raises(ValueError, match="at most 256 slots"):
        segment_uint8(torch.rand(257, 2, 2))
    with pytest.raises(ValueError, match="tie_tolerance"):
        segment_uint8(torch.rand(2, 2, 2), -1.0)
