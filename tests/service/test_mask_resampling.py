"""``service.postprocess.mask_outputs``: the separable bilinear resampling of the model's masks onto the mask size.

References are torch's own samplers, independent of the serving code: ``F.interpolate`` (bilinear,
``align_corners=False``, as the evaluation upsamples, ``training.metrics.masks``) for a stretch and for a crop or
padded canvas covering whole output pixels, and ``F.grid_sample`` (border padding) at any view. Soft masks must agree
within 1e-5; segmentations exactly, except on pixels whose reference soft masks put a slot within 1e-5 of the tie
tolerance below the largest, where float rounding may move it across (see :func:`plugins.segmentation.segment`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import service.postprocess as postprocess
from plugins.segmentation import SEGMENTATION_TIE_TOLERANCE, segment
from service.postprocess import MaskRequest, axis_weights, mask_outputs
from service.types import OUTSIDE_VIEW
from training.metrics.masks import upsample_to_labels

SOFT_ATOL = 1e-5
CROP = (0.0, 0.25, 1.0, 0.5)  # the middle half of the columns
PAD = (-0.5, 0.0, 2.0, 1.0)  # the frame is the middle half of a canvas twice its height
ODD_CROP = (0.0, 255 / 1022, 1.0, 511 / 1022)  # at 1022 columns: columns 255-765, whose centres lie in it


def _masks(seed: int, shape: tuple[int, ...] = (2, 6, 16, 16)) -> np.ndarray:
    """Soft masks ``[B, K, h, w]`` summing to 1 over K, with sharp and flat regions (a softmax of scaled noise)."""
    logits = np.random.default_rng(seed).normal(scale=3.0, size=shape).astype(np.float32)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _interpolated(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[B, K, h, w]`` -> ``[B, K, H, W]`` with ``F.interpolate`` (bilinear, ``align_corners=False``)."""
    return F.interpolate(torch.from_numpy(masks), size=size, mode="bilinear", align_corners=False).numpy()


def _assert_segmentation_of(segmentation: np.ndarray, soft: np.ndarray) -> None:
    """``segmentation`` ``[..., H, W]`` is :func:`segment` of the reference ``soft`` ``[..., K, H, W]`` but where a
    slot's gap below the largest is within ``SOFT_ATOL`` of the tie tolerance (few pixels: the rule is not vacuous)."""
    reference = torch.from_numpy(np.ascontiguousarray(soft))
    expected = segment(reference).numpy()
    gaps = soft.max(axis=-3, keepdims=True) - soft  # [..., K, H, W]
    undecided = (np.abs(gaps - SEGMENTATION_TIE_TOLERANCE) <= SOFT_ATOL).any(axis=-3)  # [..., H, W]
    assert undecided.mean() < 0.01, undecided.mean()
    wrong = (segmentation != expected) & ~undecided
    assert not wrong.any(), f"{int(wrong.sum())} pixels differ from the reference segmentation"


def test_axis_weights_are_the_two_nearest_pixels_weighted_by_distance():
    """Hand-computed: 2 mask pixels to 4 output pixels (positions -0.25 -> 0, 0.25, 0.75, 1.25 -> 1), and the same
    positions for the middle 4 of 8 output pixels when the view is the middle half of the frame."""
    expected = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    inside, weights = axis_weights(2, 4, 0.0, 1.0)
    assert inside == slice(0, 4)
    np.testing.assert_array_equal(weights.numpy(), expected)
    inside, weights = axis_weights(2, 8, 0.25, 0.5)
    assert inside == slice(2, 6)
    np.testing.assert_array_equal(weights.numpy(), expected)
    inside, weights = axis_weights(3, 1, 0.0, 1.0)  # one output pixel: the middle of the masks
    assert inside == slice(0, 1)
    np.testing.assert_array_equal(weights.numpy(), [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((2, 6, 16, 16), (1, 1)),
        ((2, 6, 16, 16), (5, 3)),  # smaller than the masks: bilinear without antialiasing, as interpolate
        ((2, 6, 16, 16), (16, 16)),
        ((2, 6, 16, 16), (17, 31)),
        ((2, 6, 16, 16), (64, 64)),
        ((1, 4, 12, 20), (513, 511)),
    ],
    ids=lambda value: "x".join(map(str, value)),
)
def test_a_stretch_is_interpolate_and_its_argmax_the_evaluations(shape, size):
    masks = _masks(1, shape)
    count = shape[0]
    both = mask_outputs(masks, [MaskRequest(size, soft=True)] * count)
    alone = mask_outputs(masks, [MaskRequest(size)] * count)  # the segmentation without soft masks
    reference = _interpolated(masks, size)  # [B, K, H, W]
    soft = np.stack([out.soft_masks for out in both])
    np.testing.assert_allclose(soft, reference, atol=SOFT_ATOL, rtol=0)
    segmentation = np.stack([out.segmentation for out in both])
    _assert_segmentation_of(segmentation, reference)
    np.testing.assert_array_equal(np.stack([out.segmentation for out in alone]), segmentation)
    # the evaluation's plain argmax of its own upsampling, against the argmax of the service's soft masks: equal
    # but where the reference's two largest masks are within SOFT_ATOL
    labels = upsample_to_labels(torch.from_numpy(masks), size).numpy()
    top_two = np.sort(reference, axis=1)[:, -2:]  # [B, 2, H, W]
    close = top_two[:, 1] - top_two[:, 0] <= SOFT_ATOL
    assert not ((soft.argmax(axis=1) != labels) & ~close).any()


@pytest.mark.parametrize(
    ("view", "size", "canvas", "covered", "seen"),
    [  # covered: the output pixels in the view; seen: their part of the masks upsampled to the canvas
        (ODD_CROP, (513, 1022), (513, 511), np.s_[:, 255:766], np.s_[:, :]),  # the crop: 511 whole columns
        (PAD, (514, 511), (1028, 511), np.s_[:, :], np.s_[257:771, :]),  # the frame's rows of the canvas
    ],
    ids=["crop", "pad"],
)
def test_a_view_is_interpolate_onto_the_region_it_covers(view, size, canvas, covered, seen):
    """A crop's masks are the model's upsampled to the crop's output pixels, 0 and OUTSIDE_VIEW beside it; a padded
    canvas's are the frame's rows of the masks upsampled to the whole canvas."""
    masks = _masks(2, (1, 5, 12, 12))
    (out,) = mask_outputs(masks, [MaskRequest(size, soft=True, view=view)])
    (alone,) = mask_outputs(masks, [MaskRequest(size, view=view)])
    expected = _interpolated(masks, canvas)[(0, slice(None), *seen)]  # [K, *covered]
    np.testing.assert_allclose(out.soft_masks[(slice(None), *covered)], expected, atol=SOFT_ATOL, rtol=0)
    _assert_segmentation_of(out.segmentation[covered], expected)
    np.testing.assert_array_equal(alone.segmentation, out.segmentation)
    outside = np.ones(size, dtype=bool)
    outside[covered] = False
    assert outside.any() == (view == ODD_CROP)
    assert (out.segmentation[outside] == OUTSIDE_VIEW).all() and (out.soft_masks[:, outside] == 0).all()
    assert out.segmentation[~outside].max() < 5


@pytest.mark.parametrize(
    "view",
    [(0.0, 0.21896955503512883, 1.0, 0.5620608899297423), (-0.3779, 0.0, 1.7558, 1.0), (0.1, -0.2, 0.7, 1.3)],
    ids=["crop of 480x854", "pad of 854x480", "crop and pad"],
)
def test_any_view_is_grid_sample_at_the_output_pixel_centres(view):
    """Views whose edges fall inside output pixels: the masks sampled by ``grid_sample`` (bilinear, border padding,
    ``align_corners=False``) at each inside pixel's centre, its position in the view as grid coordinate 2 v - 1."""
    masks = _masks(3, (2, 6, 16, 16))
    size = (240, 427)
    top, left, height, width = view
    ys = (np.arange(size[0]) + 0.5) / size[0]  # [H] frame fractions of the pixel centres
    xs = (np.arange(size[1]) + 0.5) / size[1]  # [W]
    rows = np.flatnonzero((ys >= top) & (ys < top + height))
    cols = np.flatnonzero((xs >= left) & (xs < left + width))
    grid = np.empty((2, len(rows), len(cols), 2), dtype=np.float32)  # [B, rows, cols, (x, y)]
    grid[..., 0] = ((xs[cols] - left) / width * 2 - 1)[None, None, :]
    grid[..., 1] = ((ys[rows] - top) / height * 2 - 1)[None, :, None]
    sampled = F.grid_sample(
        torch.from_numpy(masks), torch.from_numpy(grid), mode="bilinear", padding_mode="border", align_corners=False
    ).numpy()  # [B, K, rows, cols]
    outputs = mask_outputs(masks, [MaskRequest(size, soft=True, view=view)] * 2)
    block = np.ix_(rows, cols)
    for row, out in enumerate(outputs):
        np.testing.assert_allclose(out.soft_masks[:, block[0], block[1]], sampled[row], atol=SOFT_ATOL, rtol=0)
        _assert_segmentation_of(out.segmentation[block], sampled[row])
        outside = np.ones(size, dtype=bool)
        outside[block] = False
        assert outside.any() == (view[1] > 0 or view[0] > 0)  # pixels outside a crop, none beside a canvas
        assert (out.segmentation[outside] == OUTSIDE_VIEW).all() and (out.soft_masks[:, outside] == 0).all()


@pytest.mark.parametrize("view", [None, CROP, PAD], ids=["stretch", "crop", "pad"])
def test_masks_are_segmented_a_band_of_rows_at_a_time(monkeypatch, view):
    """The masks are resampled and segmented in bands of at most BAND_PIXELS output pixels (a row at least), with
    the map the reference gives."""
    masks = _masks(4, (2, 6, 12, 12))
    size = (96, 160)
    monkeypatch.setattr(postprocess, "BAND_PIXELS", 7 * 160)  # bands of 7 rows (fewer for a crop's columns)
    segmented: list[tuple[int, ...]] = []
    real_segment = postprocess.segment_uint8

    def spy(sampled: torch.Tensor) -> np.ndarray:
        segmented.append(tuple(sampled.shape))
        return real_segment(sampled)

    monkeypatch.setattr(postprocess, "segment_uint8", spy)
    outputs = mask_outputs(masks, [MaskRequest(size, view=view)] * 2)
    assert len(segmented) > 1 and all(rows * cols <= 7 * 160 for *_, rows, cols in segmented), segmented
    if view == CROP:  # columns 40-119 have their centres in [0.25, 0.75)
        reference, region = _interpolated(masks, (96, 80)), np.s_[:, 40:120]
    elif view == PAD:  # rows 48-143 of a 192-row canvas
        reference, region = _interpolated(masks, (192, 160))[:, :, 48:144], np.s_[:, :]
    else:
        reference, region = _interpolated(masks, size), np.s_[:, :]
    for row, out in enumerate(outputs):
        assert out.soft_masks is None
        _assert_segmentation_of(out.segmentation[region], reference[row])


def _peak_growth_mib(make: Callable[[], object]) -> float:
    """How far this process's resident memory rose above its level before ``make()`` while it ran (Linux: the peak
    is reset through ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # the peak resident set (VmHWM) starts again from the current one
    except OSError:
        pytest.skip("resetting the peak resident memory needs Linux's /proc/self/clear_refs")

    def status_kib(field: str) -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    before = status_kib("VmRSS")
    made = make()
    growth = (status_kib("VmHWM") - before) / 1024
    del made
    return growth


def test_large_outputs_need_little_memory_beyond_themselves():
    """A 4096 x 4096 segmentation of 6 slots needs its 16 MiB and little more (its soft masks resampled whole would
    take 384 MiB); 2048 x 2048 soft masks and segmentation (100 MiB) little more than themselves (not a copy), and
    in uint8 (24 MiB, quantised a band at a time) not the 96 MiB of float32 soft masks beside them."""
    masks = _masks(5, (1, 6, 16, 16))
    mask_outputs(masks, [MaskRequest((64, 64), soft=True)])  # weights cached, libraries warm
    map_growth = _peak_growth_mib(lambda: mask_outputs(masks, [MaskRequest((4096, 4096))]))
    assert map_growth < 16 + 24, map_growth
    soft_growth = _peak_growth_mib(lambda: mask_outputs(masks, [MaskRequest((2048, 2048), soft=True)]))
    assert soft_growth < 100 + 32, soft_growth
    # uint8: the 24 MiB result and the 4 MiB map
    uint8_growth = _peak_growth_mib(
        lambda: mask_outputs(masks, [MaskRequest((2048, 2048), soft=True, soft_uint8=True)])
    )
    assert uint8_growth < 28 + 32, uint8_growth


@pytest.mark.parametrize("view", [None, CROP], ids=["stretch", "crop"])
@pytest.mark.parametrize("quantised", [False, True], ids=["float32", "uint8"])
def test_soft_masks_alone_are_made_without_a_segmentation(monkeypatch, view, quantised):
    masks = _masks(6, (1, 6, 16, 16))
    size = (120, 200)
    (expected,) = mask_outputs(masks, [MaskRequest(size, soft=True, soft_uint8=quantised, view=view)])
    calls = 0
    real_segment = postprocess.segment_uint8

    def counting(sampled: torch.Tensor) -> np.ndarray:
        nonlocal calls
        calls += 1
        return real_segment(sampled)

    monkeypatch.setattr(postprocess, "segment_uint8", counting)
    (out,) = mask_outputs(masks, [MaskRequest(size, segmentation=False, soft=True, soft_uint8=quantised, view=view)])
    assert calls == 0 and out.segmentation is None
    assert out.soft_masks.dtype == (np.uint8 if quantised else np.float32)
    np.testing.assert_array_equal(out.soft_masks, expected.soft_masks)


def test_uint8_soft_masks_are_the_float_ones_rounded_and_each_frame_gets_its_own():
    """Frames of one group asking for float32 and uint8 soft masks of the same masks: the uint8 ones are the float
    ones x 255, rounded to the nearest; the float ones are those of a frame alone, not a view of the group's."""
    masks = _masks(7, (1, 6, 16, 16))
    requests = [MaskRequest((50, 70), soft=True), MaskRequest((50, 70), soft=True, soft_uint8=True)] * 2
    outputs = mask_outputs(masks[[0, 0, 0, 0]], requests)
    (alone,) = mask_outputs(masks, requests[:1])
    for floats, quantised in (outputs[:2], outputs[2:]):
        np.testing.assert_array_equal(floats.soft_masks, alone.soft_masks)
        np.testing.assert_array_equal(
            quantised.soft_masks, np.rint(alone.soft_masks * 255).clip(0, 255).astype(np.uint8)
        )
        held = floats.soft_masks if floats.soft_masks.base is None else floats.soft_masks.base
        assert held.nbytes == floats.soft_masks.nbytes  # not the group's four frames


def _quantised_reference(soft: np.ndarray) -> np.ndarray:
    """float32 soft masks as uint8 the way the whole-frame quantisation makes them: x 255, rounded (ties to even),
    clipped, cast."""
    return np.clip(np.rint(soft * np.float32(255)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("view", [None, CROP, PAD, ODD_CROP], ids=["stretch", "crop", "pad", "odd-crop"])
@pytest.mark.parametrize("segmentation", [True, False], ids=["with-map", "soft-only"])
@pytest.mark.parametrize(
    "kinds",
    [("uint8",), ("uint8", "uint8", "uint8"), ("float32", "uint8"), ("uint8", "none", "float32", "uint8")],
    ids=["alone", "uint8-group", "mixed", "mixed-with-no-soft"],
)
def test_uint8_soft_masks_quantised_a_band_at_a_time_are_the_float_ones_quantised(
    monkeypatch, view, segmentation, kinds
):
    """Each frame's uint8 soft masks are byte for byte its float32 ones (made alone) quantised whole, however its
    group is made up and whether or not a map is made from the same bands; float32 soft masks and maps in the group
    are those of the frame alone. Bands of 5 rows, so a frame takes several."""
    monkeypatch.setattr(postprocess, "BAND_PIXELS", 5 * 1022)
    size = (37, 1022)
    masks = _masks(8, (len(kinds), 6, 16, 16))
    requests = [MaskRequest(size, segmentation, kind != "none", kind == "uint8", view) for kind in kinds]
    outputs = mask_outputs(masks, requests)
    for frame, (kind, out) in enumerate(zip(kinds, outputs, strict=True)):
        (floats,) = mask_outputs(masks[frame : frame + 1], [MaskRequest(size, True, True, False, view)])
        assert (out.segmentation is None) != segmentation
        if segmentation:
            np.testing.assert_array_equal(out.segmentation, floats.segmentation)
        if kind == "none":
            assert out.soft_masks is None
            continue
        expected = _quantised_reference(floats.soft_masks) if kind == "uint8" else floats.soft_masks
        assert out.soft_masks.dtype == expected.dtype and out.soft_masks.shape == (6, *size)
        assert np.array_equal(out.soft_masks, expected), f"frame {frame} ({kind})"
        assert out.soft_masks.base is None or out.soft_masks.base.nbytes == out.soft_masks.nbytes, "its own"
