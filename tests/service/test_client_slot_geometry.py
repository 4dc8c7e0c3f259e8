"""Where the slots are: the frame size, slot centroids and bounding boxes a trajectory file holds, in the frame's
pixels, with pixels outside the model's view in no slot and a segmentation of another size scaled to the frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video

from service.client.__main__ import main
from service.client.segmentation_geometry import slot_areas, slot_geometry


def _brute_force(segmentation: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids ``[K, 2]`` (mean pixel index) and boxes ``[K, 4]`` (edges, exclusive end) pixel by pixel."""
    centroids, boxes = np.full((slots, 2), np.nan), np.full((slots, 4), np.nan)
    for slot in range(slots):
        rows, cols = np.nonzero(segmentation == slot)
        if rows.size:
            centroids[slot] = rows.mean(), cols.mean()
            boxes[slot] = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    return centroids, boxes


def test_centroids_and_boxes_are_in_pixel_indices_and_edges_and_leave_out_the_outside():
    segmentation = np.array(
        [
            [1, 255, 0, 0, 0, 255],
            [255, 255, 0, 0, 0, 255],
            [255, 255, 255, 0, 255, 255],
        ],
        np.uint8,
    )
    geometry = slot_geometry(segmentation, 3, (3, 6))
    assert geometry.frame_size == (3, 6)
    assert geometry.centroids.dtype == geometry.boxes.dtype == np.float32
    np.testing.assert_allclose(geometry.centroids[:2], [[(0 * 3 + 1 * 3 + 2) / 7, ((2 + 3 + 4) * 2 + 3) / 7], [0, 0]])
    np.testing.assert_array_equal(geometry.boxes[:2], [[0, 2, 3, 5], [0, 0, 1, 1]])  # frame[0:3, 2:5] holds slot 0
    assert np.isnan(geometry.centroids[2]).all() and np.isnan(geometry.boxes[2]).all()  # slot 2 has no pixels
    np.testing.assert_array_equal(geometry.areas, slot_areas(segmentation, 3))  # the same pixel counts


@pytest.mark.parametrize("scale", [(1, 1), (2, 3), (4, 1)])
def test_a_smaller_segmentation_is_scaled_to_the_frame_as_if_each_mask_pixel_covered_its_block(scale):
    """With whole scale factors a mask pixel covers a block of frame pixels: the geometry equals the brute-force
    one of the segmentation enlarged block by block (255 included, in no slot)."""
    rng = np.random.default_rng(3)
    segmentation = rng.choice(np.array([0, 1, 2, 4, 255], np.uint8), size=(7, 9), p=[0.3, 0.3, 0.01, 0.19, 0.2])
    enlarged = segmentation.repeat(scale[0], axis=0).repeat(scale[1], axis=1)  # [7 * sy, 9 * sx]
    geometry = slot_geometry(segmentation, 6, enlarged.shape)
    centroids, boxes = _brute_force(enlarged, 6)
    np.testing.assert_allclose(geometry.centroids, centroids, rtol=0, atol=1e-4)
    np.testing.assert_allclose(geometry.boxes, boxes, rtol=0, atol=1e-4)
    assert np.isnan(geometry.boxes[[3, 5]]).all()  # slots 3 and 5 are empty


def test_fractional_scales_map_mask_pixel_edges_and_centres_to_the_frame():
    segmentation = np.zeros((3, 3), np.uint8)
    segmentation[2, 2] = 1
    geometry = slot_geometry(segmentation, 2, (4, 5))
    np.testing.assert_allclose(geometry.boxes[1], [2 * 4 / 3, 2 * 5 / 3, 4, 5], rtol=1e-6)
    np.testing.assert_allclose(geometry.centroids[1], [2.5 * 4 / 3 - 0.5, 2.5 * 5 / 3 - 0.5], rtol=1e-6)
    np.testing.assert_allclose(geometry.boxes[0], [0, 0, 4, 5])


def test_bad_geometry_input_is_named():
    with pytest.raises(ValueError, match=r"non-empty \[h, w\] array, got shape \(0, 3\)"):
        slot_geometry(np.zeros((0, 3), np.uint8), 2, (4, 4))
    with pytest.raises(ValueError, match=r"frame_size must be \(height, width\) >= 1, got \(0, 4\)"):
        slot_geometry(np.zeros((2, 2), np.uint8), 2, (0, 4))


def test_the_slots_file_places_each_slot_in_the_frame_beside_a_crop(server, tmp_path):
    """``--frame-fit crop`` on 48x96 frames: the model sees the centred 48x48 crop, so every slot lies in columns
    24 to 72 and together they cover it; a slot has a box exactly when it has an area."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=74, frames=3, size=(48, 96))):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    slots, jsonl = tmp_path / "slots.npz", tmp_path / "results.jsonl"
    args = ["stream", str(folder), "--target", server.target, "--frame-fit", "crop"]
    assert main([*args, "--slots", str(slots), "--jsonl", str(jsonl)]) == 0
    areas = np.array([json.loads(line)["areas"] for line in jsonl.read_text().splitlines()])  # [T, K]
    with np.load(slots) as saved:
        assert saved["frame_size"].tolist() == [[48, 96]] * 3
        boxes, centroids = saved["boxes"], saved["centroids"]  # [T, K, 4], [T, K, 2]
    assert boxes.shape == (3, 4, 4) and centroids.shape == (3, 4, 2)
    assert (np.isfinite(boxes).all(axis=2) == (areas > 0)).all()
    for row in range(3):
        present = boxes[row][np.isfinite(boxes[row]).all(axis=1)]
        assert present[:, 0].min() == 0 and present[:, 2].max() == 48
        assert present[:, 1].min() == 24 and present[:, 3].max() == 72, present
    inside = np.isfinite(centroids[..., 1])
    assert (centroids[..., 1][inside] >= 24).all() and (centroids[..., 1][inside] < 72).all()


def test_the_slots_file_scales_a_smaller_mask_to_the_frames_pixels(server, tmp_path):
    """36x1300 frames get 18x640 masks (the client's long-side cap): the boxes are in the frame's pixels and
    together cover the whole frame."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=75, frames=2, size=(36, 1300))):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    slots = tmp_path / "slots.npz"
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots)]) == 0
    with np.load(slots) as saved:
        assert saved["frame_size"].tolist() == [[36, 1300]] * 2
        boxes, centroids = saved["boxes"], saved["centroids"]
    for row in range(2):
        present = boxes[row][np.isfinite(boxes[row]).all(axis=1)]
        np.testing.assert_allclose(
            [present[:, 0].min(), present[:, 1].min(), present[:, 2].max(), present[:, 3].max()], [0, 0, 36, 1300]
        )
    inside = np.isfinite(centroids)
    assert (centroids[inside] >= 0).all() and (centroids[..., 1][inside[..., 1]] <= 1300).all()


def test_slot_areas_and_geometry_count_the_same_pixels():
    """255 is in no slot for both; with 256 slots, 255 is a slot's index for both."""
    segmentation = np.array([[0, 255], [255, 1]], np.uint8)
    assert slot_areas(segmentation, 2).tolist() == [0.25, 0.25]
    assert np.isfinite(slot_geometry(segmentation, 2, (2, 2)).boxes).all()
    everything = slot_geometry(segmentation, 256, (2, 2))
    np.testing.assert_array_equal(everything.boxes[255], [0, 0, 2, 2])
    assert slot_areas(segmentation, 256)[255] == 0.5
