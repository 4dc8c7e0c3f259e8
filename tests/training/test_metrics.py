"""Tests for training.metrics: hand-computed cases, invariances, modes, edge cases and brute-force cross-checks."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from training.metrics import (
    BackgroundPolicy,
    EvalMode,
    ObjectDiscoveryMetrics,
    adjusted_rand_index,
    contingency_table,
    fg_adjusted_rand_index,
    mean_best_overlap,
    mean_matched_iou,
    resize_gt_ids,
    upsample_to_labels,
)


def as_video(rows: list[list[list[int]]]) -> torch.Tensor:
    """Frames given as nested lists [T][H][W] -> a one-video batch [1, T, H, W]."""
    return torch.tensor(rows, dtype=torch.long).unsqueeze(0)


def one_hot_masks(labels: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Hard labels [B, T, H, W] -> soft masks [B, T, K, H, W]."""
    return F.one_hot(labels, num_slots).permute(0, 1, 4, 2, 3).float()


def all_scores(
    pred: torch.Tensor, gt: torch.Tensor, mode: EvalMode = "video", background: BackgroundPolicy = "ignore"
) -> list[float]:
    return [
        adjusted_rand_index(pred, gt, mode).mean(),
        fg_adjusted_rand_index(pred, gt, mode).mean(),
        mean_best_overlap(pred, gt, mode, background).mean(),
        mean_matched_iou(pred, gt, mode, background).mean(),
    ]


def pair_counting_ari(gt: list[int], pred: list[int]) -> float:
    """ARI from the four pair counts (same/different in GT x same/different in prediction)."""
    same_same = same_diff = diff_same = diff_diff = 0
    for i, j in itertools.combinations(range(len(gt)), 2):
        same_gt, same_pred = gt[i] == gt[j], pred[i] == pred[j]
        if same_gt and same_pred:
            same_same += 1
        elif same_gt:
            same_diff += 1
        elif same_pred:
            diff_same += 1
        else:
            diff_diff += 1
    numerator = 2 * (diff_diff * same_same - same_diff * diff_same)
    denominator = (diff_diff + diff_same) * (diff_same + same_same) + (diff_diff + same_diff) * (same_diff + same_same)
    return 1.0 if denominator == 0 else numerator / denominator


# --- hand-computed cases ---------------------------------------------------------------------------------------


def test_hand_computed_2x3_image() -> None:
    # gt   = 0 0 5     pred = 0 0 0
    #        0 5 5            1 1 1
    # contingency n = [[2, 1], [1, 2]], a = (3, 3), b = (3, 3), N = 6.
    # ARI: sum C(n,2) = 2, sum C(a,2) = sum C(b,2) = 6, C(6,2) = 15, E = 36/15 = 2.4, max = 6
    #      -> (2 - 2.4) / (6 - 2.4) = -1/9.
    # FG-ARI on the 3 object points (pred labels 0, 1, 1): sum C(n,2) = 1, sum C(a,2) = 3, sum C(b,2) = 1,
    #      C(3,2) = 3, E = 1, max = 2 -> (1 - 1) / (2 - 1) = 0.
    # IoU(object 5, pred 0) = 1/5, IoU(object 5, pred 1) = 2/4 -> mBO = mIoU = 0.5 ("ignore").
    # "segment": IoU(bg, pred 0) = 2/4, IoU(bg, pred 1) = 1/5 -> mBO = (0.5 + 0.5)/2, Hungarian mIoU = 0.5.
    gt = as_video([[[0, 0, 5], [0, 5, 5]]])
    pred = as_video([[[0, 0, 0], [1, 1, 1]]])
    for mode in ("video", "image"):
        assert all_scores(pred, gt, mode) == pytest.approx([-1 / 9, 0.0, 0.5, 0.5])
        assert all_scores(pred, gt, mode, "segment") == pytest.approx([-1 / 9, 0.0, 0.5, 0.5])


def test_hand_computed_classic_1d() -> None:
    # gt = 0 0 0 1 1 1, pred = 0 0 1 1 2 2: n = [[2,1,0],[0,1,2]], sum C(n,2) = 2, sum C(a,2) = 6,
    # sum C(b,2) = 3, C(6,2) = 15, E = 18/15 = 1.2, max = 4.5 -> ARI = 0.8 / 3.3 = 8/33.
    gt = as_video([[[0, 0, 0, 1, 1, 1]]])
    pred = as_video([[[0, 0, 1, 1, 2, 2]]])
    assert adjusted_rand_index(pred, gt).mean() == pytest.approx(8 / 33)


def test_void_points_are_left_out_of_every_score() -> None:
    """DAVIS void (-1 after reading) counts for no metric: scoring a clip with void points equals scoring it with
    those points deleted. Here a slot covers object 5 and its void ring: with the ring scored as background the
    overlap would be 2/4; without it, it is 1."""
    gt = as_video([[[0, -1, 5, 5, -1, 0]]])
    pred = as_video([[[0, 1, 1, 1, 1, 0]]])
    kept = as_video([[[0, 5, 5, 0]]])
    kept_pred = as_video([[[0, 1, 1, 0]]])
    for mode in ("video", "image"):
        for background in ("ignore", "segment"):
            scores = all_scores(pred, gt, mode, background)
            assert scores == pytest.approx(all_scores(kept_pred, kept, mode, background))
    assert mean_best_overlap(pred, gt).mean() == pytest.approx(1.0)
    table = contingency_table(pred[0], gt[0])
    assert table.gt_ids.tolist() == [0, 5] and int(table.counts.sum()) == 4
    all_void = as_video([[[-1, -1]]])
    assert not adjusted_rand_index(torch.zeros_like(all_void), all_void, "image").valid.any(), "nothing to score"
    with pytest.raises(ValueError, match="-1 for ignored points"):
        contingency_table(pred[0], gt[0] - 1)


def test_background_policy_difference() -> None:
    # gt = 0 0 0 / 0 0 7, one slot covering everything.
    # "ignore":  IoU(7, slot) = 1/6                       -> mBO = mIoU = 1/6.
    # "segment": IoU(bg, slot) = 5/6, IoU(7, slot) = 1/6  -> mBO = 1/2; Hungarian gives the slot to bg,
    #            object 7 is unmatched -> mIoU = (5/6 + 0)/2 = 5/12.
    gt = as_video([[[0, 0, 0], [0, 0, 7]]])
    pred = torch.zeros_like(gt)
    assert mean_best_overlap(pred, gt, background="ignore").mean() == pytest.approx(1 / 6)
    assert mean_matched_iou(pred, gt, background="ignore").mean() == pytest.approx(1 / 6)
    assert mean_best_overlap(pred, gt, background="segment").mean() == pytest.approx(1 / 2)
    assert mean_matched_iou(pred, gt, background="segment").mean() == pytest.approx(5 / 12)


def test_more_objects_than_slots() -> None:
    # gt = 1 1 2 2 3 3 (no background), pred = 0 0 1 1 1 1 (K = 2).
    # IoU(1, 0) = 1, IoU(2, 1) = IoU(3, 1) = 2/4. mBO reuses slot 1: (1 + 0.5 + 0.5)/3 = 2/3.
    # mIoU matches one-to-one, object 2 or 3 stays unmatched: (1 + 0.5 + 0)/3 = 1/2.
    gt = as_video([[[1, 1, 2, 2, 3, 3]]])
    pred = as_video([[[0, 0, 1, 1, 1, 1]]])
    assert mean_best_overlap(pred, gt).mean() == pytest.approx(2 / 3)
    assert mean_matched_iou(pred, gt).mean() == pytest.approx(1 / 2)


def test_one_slot_only() -> None:
    gt = as_video([[[0, 0, 1], [0, 2, 2]]])
    pred = torch.zeros_like(gt)
    # One predicted cluster: sum C(n,2) = sum C(a,2) = E, so ARI = 0 whenever GT has more than one cluster.
    assert adjusted_rand_index(pred, gt).mean() == pytest.approx(0.0)
    assert fg_adjusted_rand_index(pred, gt).mean() == pytest.approx(0.0)
    # Single foreground object all in one slot: both partitions trivial -> FG-ARI = 1 by the zero-denominator rule.
    single = as_video([[[0, 0, 4], [0, 4, 4]]])
    assert fg_adjusted_rand_index(pred, single).mean() == 1.0


# --- invariances and modes -------------------------------------------------------------------------------------


def test_perfect_prediction_scores_one() -> None:
    gt = as_video([[[0, 3, 3], [0, 7, 7]], [[0, 0, 3], [7, 7, 0]]])
    pred = torch.zeros_like(gt)
    pred[gt == 3], pred[gt == 7], pred[gt == 0] = 2, 0, 1
    modes: tuple[EvalMode, ...] = ("video", "image")
    policies: tuple[BackgroundPolicy, ...] = ("ignore", "segment")
    for mode, background in itertools.product(modes, policies):
        assert all_scores(pred, gt, mode, background) == pytest.approx([1.0] * 4)


def test_label_permutation_invariance() -> None:
    generator = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 4, (3, 2, 5, 6), generator=generator)
    pred = torch.randint(0, 5, (3, 2, 5, 6), generator=generator)
    slot_perm = torch.randperm(5, generator=generator)
    id_map = torch.tensor([0, 11, 4, 9])  # keeps background at 0, renames objects non-contiguously
    for mode in ("video", "image"):
        base = all_scores(pred, gt, mode, "segment") + all_scores(pred, gt, mode, "ignore")
        moved = all_scores(slot_perm[pred], id_map[gt], mode, "segment") + all_scores(
            slot_perm[pred], id_map[gt], mode, "ignore"
        )
        assert moved == pytest.approx(base)


def test_slot_swap_between_frames_penalised_in_video_mode_only() -> None:
    # Objects 1 (left column) and 2 (right column) in both frames; the slots swap objects at frame 1.
    # Video mode, 8 points: n = [[2, 2], [2, 2]], sum C(n,2) = 4, sum C(a,2) = sum C(b,2) = 12, C(8,2) = 28,
    # E = 144/28 = 36/7 -> ARI = (4 - 36/7) / (12 - 36/7) = -1/6; tube IoU = 2 / (4 + 4 - 2) = 1/3.
    gt = as_video([[[1, 2], [1, 2]], [[1, 2], [1, 2]]])
    pred = as_video([[[0, 1], [0, 1]], [[1, 0], [1, 0]]])
    assert all_scores(pred, gt, "image") == pytest.approx([1.0] * 4)
    assert all_scores(pred, gt, "video") == pytest.approx([-1 / 6, -1 / 6, 1 / 3, 1 / 3])


def test_non_contiguous_ids_and_objects_leaving_view() -> None:
    gt = as_video([[[0, 3, 3], [0, 0, 9]], [[0, 0, 0], [0, 0, 9]], [[0, 0, 0], [0, 0, 0]]])
    pred = torch.zeros_like(gt)
    pred[gt == 3], pred[gt == 9] = 1, 2
    table = contingency_table(pred.reshape(3, -1), gt.reshape(3, -1))
    assert table.gt_ids.tolist() == [0, 3, 9]
    assert table.background_row == 0
    assert table.counts.shape == (3, 3, 3)
    assert table.group(3).counts[0].tolist() == [[14, 0, 0], [0, 2, 0], [0, 0, 2]]
    # Frame 2 has no foreground: invalid for FG-ARI and for "ignore" mBO/mIoU, still valid for ARI and "segment".
    assert fg_adjusted_rand_index(pred, gt, "image").valid.tolist() == [True, True, False]
    assert mean_best_overlap(pred, gt, "image", "ignore").num_invalid == 1
    assert mean_best_overlap(pred, gt, "image", "segment").num_invalid == 0
    assert adjusted_rand_index(pred, gt, "image").num_invalid == 0
    assert all_scores(pred, gt, "image") == pytest.approx([1.0] * 4)
    assert all_scores(pred, gt, "video") == pytest.approx([1.0] * 4)


def test_contingency_large_ids_match_small_ids() -> None:
    generator = torch.Generator().manual_seed(4)
    small = torch.randint(0, 4, (3, 20), generator=generator)
    pred = torch.randint(0, 3, (3, 20), generator=generator)
    large = torch.tensor([0, 70_000, 10**12, 2**40])[small]  # beyond the lookup-table path
    small_table, large_table = contingency_table(pred, small), contingency_table(pred, large)
    assert torch.equal(small_table.counts, large_table.counts)
    assert large_table.gt_ids.tolist() == sorted({0, 70_000, 10**12, 2**40} & set(large.flatten().tolist()))
    assert small_table.foreground().counts.shape[1] == small_table.counts.shape[1] - 1


# --- accumulator -----------------------------------------------------------------------------------------------


def test_accumulator_counts_invalid_and_excludes_them() -> None:
    gt = torch.zeros(2, 3, 4, 4, dtype=torch.long)
    gt[0, 0, :2, :2] = 5  # video 0: the object is visible in frame 0 only
    pred = (gt > 0).long()
    metrics = ObjectDiscoveryMetrics()
    metrics.update(one_hot_masks(pred, 3), gt)
    scores = metrics.compute()
    assert (scores.num_videos, scores.num_frames) == (2, 6)
    assert (scores.num_invalid_videos, scores.num_invalid_frames) == (1, 5)
    assert [scores.video_fg_ari, scores.image_fg_ari, scores.video_mbo, scores.image_miou] == [1.0] * 4
    assert scores.video_ari == 1.0 and scores.image_ari == 1.0
    assert scores.background_policy == "ignore" and "VideoSAUR" in scores.background_convention
    json.dumps(scores.to_dict())


def test_accumulator_averages_over_batches_and_nan_becomes_none() -> None:
    gt = as_video([[[0, 0, 5], [0, 5, 5]]])
    pred = as_video([[[0, 0, 0], [1, 1, 1]]])
    metrics = ObjectDiscoveryMetrics(background="segment", mask_source="slot_attention")
    metrics.update(one_hot_masks(pred, 2), gt)
    metrics.update(one_hot_masks(gt.clamp(max=1), 2), gt)  # a perfect second video
    scores = metrics.compute()
    assert scores.video_ari == pytest.approx((-1 / 9 + 1) / 2)
    assert scores.image_mbo == pytest.approx((0.5 + 1) / 2)
    assert scores.to_dict()["mask_source"] == "slot_attention"
    empty = ObjectDiscoveryMetrics()
    empty.update(torch.rand(1, 2, 3, 2, 2), torch.zeros(1, 2, 4, 4, dtype=torch.long))
    assert empty.compute().to_dict()["video_fg_ari"] is None
    empty.reset()
    with pytest.raises(RuntimeError, match=r"called before any update\(\)"):
        empty.compute()


def test_accumulator_reports_each_score_under_its_own_name() -> None:
    """An imperfect multi-frame case in which all eight scores differ, each compared with the function that
    defines it: a score wired to the wrong mode or metric cannot pass."""
    generator = torch.Generator().manual_seed(7)
    gt = torch.randint(0, 4, (3, 4, 6, 6), generator=generator)  # [B, T, H, W]
    pred = torch.randint(0, 3, (3, 4, 6, 6), generator=generator)
    pred[:, 2:] = (pred[:, 2:] + 1) % 3  # slots change objects half-way: video and image modes disagree
    metrics = ObjectDiscoveryMetrics(background="ignore")
    metrics.update(one_hot_masks(pred, 3), gt)
    scores = metrics.compute()
    expected = {
        f"{mode}_{name}": function(pred, gt, mode, *extra).mean()
        for mode in ("video", "image")
        for name, function, extra in (
            ("ari", adjusted_rand_index, ()),
            ("fg_ari", fg_adjusted_rand_index, ()),
            ("mbo", mean_best_overlap, ("ignore",)),
            ("miou", mean_matched_iou, ("ignore",)),
        )
    }
    assert len({round(value, 6) for value in expected.values()}) == 8, expected
    assert {name: getattr(scores, name) for name in expected} == pytest.approx(expected)


def test_accumulator_upsamples_soft_masks() -> None:
    generator = torch.Generator().manual_seed(1)
    masks = torch.rand(2, 3, 4, 4, 4, generator=generator).softmax(dim=2)  # [B, T, K, h, w]
    gt = torch.randint(0, 3, (2, 3, 8, 8), generator=generator)
    metrics = ObjectDiscoveryMetrics()
    metrics.update(masks, gt)
    labels = upsample_to_labels(masks, (8, 8))
    assert metrics.compute().image_ari == pytest.approx(adjusted_rand_index(labels, gt, "image").mean())


# --- masks -----------------------------------------------------------------------------------------------------


def test_upsample_to_labels_matches_bilinear_then_argmax() -> None:
    masks = torch.rand(2, 3, 5, 4, 4)  # [B, T, K, h, w]
    labels = upsample_to_labels(masks, (16, 12))
    reference = F.interpolate(masks.reshape(6, 5, 4, 4), size=(16, 12), mode="bilinear", align_corners=False)
    assert labels.shape == (2, 3, 16, 12) and labels.dtype == torch.long
    assert torch.equal(labels, reference.argmax(dim=1).reshape(2, 3, 16, 12))


def test_resize_gt_ids_nearest_exact_keeps_ids() -> None:
    ids = torch.tensor([[0, 3], [7, 1000003]])
    assert resize_gt_ids(ids, (4, 4)).tolist() == [[0, 0, 3, 3]] * 2 + [[7, 7, 1000003, 1000003]] * 2
    big = torch.randint(0, 50, (2, 17, 13))
    reference = F.interpolate(big[:, None].float(), size=(8, 5), mode="nearest-exact")[:, 0].long()
    assert torch.equal(resize_gt_ids(big, (8, 5)), reference)
    with pytest.raises(TypeError):
        resize_gt_ids(big.float(), (8, 5))


# --- brute-force cross-checks ----------------------------------------------------------------------------------


def brute_force_overlaps(gt: list[int], pred: list[int], skip_background: bool) -> tuple[float, float]:
    """mBO and mIoU by enumerating every injective assignment of GT segments to predicted labels (or none)."""
    segments = sorted({g for g in gt if not (skip_background and g == 0)})
    labels = sorted(set(pred))

    def iou(g: int, p: int) -> float:
        inter = sum(1 for x, y in zip(gt, pred, strict=True) if x == g and y == p)
        union = sum(1 for x, y in zip(gt, pred, strict=True) if x == g or y == p)
        return inter / union

    mbo = sum(max(iou(g, p) for p in labels) for g in segments) / len(segments)
    options = [*labels, *([None] * len(segments))]
    best = 0.0
    for choice in itertools.permutations(options, len(segments)):
        best = max(best, sum(iou(g, p) for g, p in zip(segments, choice, strict=True) if p is not None))
    return mbo, best / len(segments)


def test_ari_matches_pair_counting_on_random_labelings() -> None:
    generator = torch.Generator().manual_seed(2)
    for trial in range(40):
        num_points = int(torch.randint(1, 30, (1,), generator=generator))
        gt = torch.randint(0, 1 + trial % 5, (1, 1, 1, num_points), generator=generator)
        pred = torch.randint(0, 1 + (trial // 5) % 6, (1, 1, 1, num_points), generator=generator)
        expected = pair_counting_ari(gt.flatten().tolist(), pred.flatten().tolist())
        assert adjusted_rand_index(pred, gt).mean() == pytest.approx(expected, abs=1e-12)
        fg = gt.flatten() != 0
        if fg.any():
            expected_fg = pair_counting_ari(gt.flatten()[fg].tolist(), pred.flatten()[fg].tolist())
            assert fg_adjusted_rand_index(pred, gt).mean() == pytest.approx(expected_fg, abs=1e-12)
        else:
            assert math.isnan(fg_adjusted_rand_index(pred, gt).mean())


def test_overlaps_match_brute_force_on_random_labelings() -> None:
    generator = torch.Generator().manual_seed(3)
    for trial in range(20):
        gt = torch.randint(0, 5, (1, 1, 3, 4), generator=generator) * 3  # non-contiguous ids {0, 3, ..., 12}
        pred = torch.randint(0, 1 + trial % 4, (1, 1, 3, 4), generator=generator)
        for background in ("ignore", "segment"):
            skip = background == "ignore"
            if skip and not (gt != 0).any():
                continue
            mbo, miou = brute_force_overlaps(gt.flatten().tolist(), pred.flatten().tolist(), skip)
            assert mean_best_overlap(pred, gt, background=background).mean() == pytest.approx(mbo)
            assert mean_matched_iou(pred, gt, background=background).mean() == pytest.approx(miou)


def test_the_mask_readers_void_label_is_the_id_the_metrics_leave_out() -> None:
    from training.datasets.images import VOID_LABEL
    from training.metrics import IGNORE_ID

    assert VOID_LABEL == IGNORE_ID


def test_accumulator_refuses_masks_that_are_not_finite() -> None:
    """The argmax of NaN masks is a valid-looking label map; scoring it would give a meaningless number."""
    masks = torch.full((1, 2, 3, 4, 4), 1 / 3)  # [B, T, K, h, w]
    masks[0, 1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        ObjectDiscoveryMetrics().update(masks, torch.zeros(1, 2, 4, 4, dtype=torch.long))
