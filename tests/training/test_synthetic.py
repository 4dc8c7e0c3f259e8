"""Tests of the synthetic multi-object video generator (numpy only, no torch)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from training.datasets.synthetic import LEVELS, SHAPES, VideoMetadata, generate_video, get_level
from training.datasets.synthetic.physics import Body, Contact, collide_pair, step
from training.datasets.synthetic.sprites import shape_mask

SEEDS = range(6)


@pytest.fixture(scope="module")
def videos():
    return {(level, seed): generate_video(level, seed, 24) for level in LEVELS for seed in SEEDS}


def test_same_seed_same_video_different_seed_different():
    a, b = generate_video("hard", 7, 12), generate_video("hard", 7, 12)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert a.metadata == b.metadata
    c = generate_video("hard", 8, 12)
    assert not np.array_equal(a.frames, c.frames)


def test_shapes_dtypes_and_size(videos):
    video = generate_video("medium", 1, 5, (48, 80))
    assert video.frames.shape == (5, 48, 80, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (5, 48, 80) and video.masks.dtype == np.uint8
    for (level, _), v in videos.items():
        assert v.frames.shape == (24, *LEVELS[level].default_size, 3)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_rasterises_distinctly(shape):
    mask = shape_mask(shape, 21)
    assert 0.2 < mask.mean() < 0.95
    others = [s for s in SHAPES if s != shape]
    assert all(not np.array_equal(mask, shape_mask(o, 21)) for o in others)


def test_masks_consistent_with_metadata(videos):
    for video in videos.values():
        meta = video.metadata
        count = len(meta.objects)
        assert set(np.unique(video.masks)) <= set(range(count + 1))
        assert [o.object_id for o in meta.objects] == list(range(1, count + 1))
        for t, states in enumerate(meta.frames):
            ids = video.masks[t]
            for info, state in zip(meta.objects, states, strict=True):
                where = ids == info.object_id
                assert state.object_id == info.object_id
                assert state.visible_px == int(where.sum())
                assert state.visible_fraction == pytest.approx(state.visible_px / info.area_px)
                assert state.fully_occluded == (state.visible_px == 0)
                x0, y0, x1, y1 = state.bbox
                if state.visible_px:
                    rows, cols = np.nonzero(where)
                    assert state.visible_bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
                    vx0, vy0, vx1, vy1 = state.visible_bbox
                    assert x0 <= vx0 and y0 <= vy0 and vx1 <= x1 and vy1 <= y1  # stable id: inside own box
                    if info.texture == "flat":
                        assert (video.frames[t][where] == info.rgb).all()
                else:
                    assert state.visible_bbox is None
                cx, cy = state.center_px
                assert (
                    abs((x0 + x1) / 2 - cx) <= info.diameter_px / 2 and abs((y0 + y1) / 2 - cy) <= info.diameter_px / 2
                )
                assert state.center_norm == pytest.approx((cx / meta.width, cy / meta.height))


def test_unoccluded_objects_are_fully_visible_and_depth_decides_occlusion(videos):
    overlaps = 0
    for video in videos.values():
        meta = video.metadata
        front = min(meta.objects, key=lambda o: o.depth)
        for states in meta.frames:
            assert states[front.object_id - 1].visible_fraction == 1.0
            overlaps += sum(s.visible_fraction < 1.0 for s in states)
    assert overlaps > 0, "no occlusion at all in the sample videos"


def test_objects_stay_in_frame(videos):
    for video in videos.values():
        meta = video.metadata
        for states in meta.frames:
            for s in states:
                x0, y0, x1, y1 = s.bbox
                assert 0 <= x0 < x1 <= meta.width and 0 <= y0 < y1 <= meta.height


def test_levels_differ_as_documented(videos):
    for (name, _), video in videos.items():
        level, meta = get_level(name), video.metadata
        assert level.min_objects <= len(meta.objects) <= level.max_objects
        assert {o.shape for o in meta.objects} <= set(level.shapes)
        assert {o.size for o in meta.objects} <= set(level.sizes)
        assert (meta.background == "plain") == (level.background == "plain")
        assert (math.hypot(*meta.camera_velocity) > 0) == (level.pan_speed > 0)
    textured = {
        name: sum(o.texture != "flat" for (n, _), v in videos.items() if n == name for o in v.metadata.objects)
        for name in LEVELS
    }
    assert textured["easy"] == 0 and textured["medium"] > 0 and textured["hard"] > textured["medium"]
    assert LEVELS["easy"].max_objects < LEVELS["hard"].min_objects + 1 < LEVELS["hard"].max_objects + 1


def test_hard_level_pans_the_background():
    video = generate_video("hard", 3, 40)
    background = video.masks == 0
    first_last = background[0] & background[-1]
    assert not np.array_equal(video.frames[0][first_last], video.frames[-1][first_last])
    still = generate_video("medium", 3, 40)
    both = (still.masks[0] == 0) & (still.masks[-1] == 0)
    assert np.array_equal(still.frames[0][both], still.frames[-1][both])


def _momentum(a: Body, b: Body) -> np.ndarray:
    return np.array([a.mass * a.vx + b.mass * b.vx, a.mass * a.vy + b.mass * b.vy])


def _energy(a: Body, b: Body) -> float:
    return 0.5 * (a.mass * (a.vx**2 + a.vy**2) + b.mass * (b.vx**2 + b.vy**2))


@pytest.mark.parametrize("offset", [0.0, 3.0])  # head-on and oblique
def test_two_object_collision_conserves_momentum_and_energy(offset):
    a = Body(90.0, 100.0, 1.5, 0.0, half=5.0, collider=5.0, mass=80.0)
    b = Body(110.0, 100.0 + offset, -0.5, 0.2, half=8.0, collider=8.0, mass=200.0)
    p0, e0 = _momentum(a, b), _energy(a, b)
    hits = []
    for _ in range(20):
        hits += [c for c in step([a, b], 200.0, 200.0)]
    assert [c.kind for c in hits] == ["object"]
    assert np.allclose(_momentum(a, b), p0) and _energy(a, b) == pytest.approx(e0)
    assert a.vx < 1.5 and b.vx > -0.5  # they bounced


def test_equal_masses_exchange_velocities_head_on():
    a = Body(0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 10.0)
    b = Body(1.9, 0.0, -1.0, 0.0, 1.0, 1.0, 10.0)
    assert collide_pair(a, b)
    assert (a.vx, b.vx) == pytest.approx((-1.0, 1.0))
    assert not collide_pair(a, b)  # now separating: no second impulse


def test_objects_bounce_at_their_time_of_impact():
    """Equal masses head on: they touch a quarter into the frame (gap 1 px, closing at 4 px per frame), swap
    velocities there and move apart for the rest of it."""
    a = Body(10.0, 50.0, 2.0, 0.0, half=5.0, collider=5.0, mass=10.0)
    b = Body(21.0, 50.0, -2.0, 0.0, half=5.0, collider=5.0, mass=10.0)
    assert step([a, b], 100.0, 100.0) == [Contact("object", (0, 1))]
    assert (a.x, b.x) == pytest.approx((10.0 + 0.5 - 1.5, 21.0 - 0.5 + 1.5))
    assert (a.vx, b.vx) == pytest.approx((-2.0, 2.0))


@pytest.mark.parametrize(
    "b_start",
    [
        (30.0, 45.0),  # glancing: the discs overlap only in the middle of the frame and have parted by its end
        (30.0, 50.5),  # nearly head on: the centres cross within the frame
    ],
)
def test_fast_objects_that_meet_within_a_frame_bounce(b_start):
    """Contacts tested only at the end of a frame missed both: no bounce and no event (the objects passed
    through each other), or a push apart without an impulse (they kept moving into each other's side)."""
    a = Body(10.0, 50.0, 20.0, 0.0, half=3.0, collider=3.0, mass=10.0)
    b = Body(*b_start, -20.0, 0.0, half=3.0, collider=3.0, mass=10.0)
    p0, e0 = _momentum(a, b), _energy(a, b)
    assert step([a, b], 100.0, 100.0) == [Contact("object", (0, 1))]
    assert np.allclose(_momentum(a, b), p0) and _energy(a, b) == pytest.approx(e0)
    assert a.vx < 20.0 and b.vx > -20.0  # they bounced
    assert math.dist((a.x, a.y), (b.x, b.y)) >= a.collider + b.collider - 1e-9
    assert (b.vx - a.vx) * (b.x - a.x) + (b.vy - a.vy) * (b.y - a.y) > 0  # separating


def test_wall_bounce_mirrors_the_path():
    body = Body(7.0, 50.0, -4.0, 1.0, half=5.0, collider=5.0, mass=10.0)
    assert step([body], 100.0, 100.0) == [Contact("wall", (0,), "left")]
    assert (body.x, body.y, body.vx, body.vy) == pytest.approx((7.0, 51.0, 4.0, 1.0))


def test_colliders_stay_apart_and_objects_move_by_their_velocity_between_events():
    """Objects bounce where their colliders touch, so colliders never overlap and an object's centre moves by
    its velocity unless an event says otherwise. Resolving pairs and walls once per step left objects
    overlapping by several pixels, fully hidden inside each other, and then jumping by pixels without any event;
    resolving them at the end of each step still moved objects by up to a pixel without an event."""
    worst_overlap = worst_jump = 0.0
    for level in ("medium", "hard"):
        collider_scale = get_level(level).collider_scale
        for seed in range(40):
            meta = generate_video(level, seed, 24).metadata
            diameters = [o.diameter_px for o in meta.objects]
            involved = {(e.frame, i) for e in meta.collisions for i in e.object_ids}
            for t, states in enumerate(meta.frames):
                for a in range(len(states)):
                    for b in range(a + 1, len(states)):
                        reach = collider_scale * (diameters[a] + diameters[b]) / 2
                        gap = math.dist(states[a].center_px, states[b].center_px)
                        worst_overlap = max(worst_overlap, reach - gap)
                for k, state in enumerate(states if t else ()):
                    if (t, k + 1) not in involved:
                        before = meta.frames[t - 1][k]
                        expected = np.add(before.center_px, before.velocity_px)
                        worst_jump = max(worst_jump, float(np.hypot(*(np.subtract(state.center_px, expected)))))
    assert worst_overlap < 1e-6, f"colliders overlap by {worst_overlap:.2g} px"
    assert worst_jump < 1e-6, f"an object jumped {worst_jump:.2g} px without an event"


def test_a_wall_event_means_the_velocity_flipped(videos):
    """An object another one pushed past a wall while it moved away from it is put back without a bounce."""
    checked = 0
    for video in videos.values():
        meta = video.metadata
        involved = Counter((e.frame, i) for e in meta.collisions for i in e.object_ids)
        for event in (e for e in meta.collisions if e.kind == "wall"):
            (i,) = event.object_ids
            if involved[event.frame, i] > 1:
                continue  # another contact in the same step changed the velocity too
            checked += 1
            axis = 0 if event.wall in ("left", "right") else 1
            before = meta.frames[event.frame - 1][i - 1].velocity_px[axis]
            after = meta.frames[event.frame][i - 1].velocity_px[axis]
            into_wall = before < 0 if event.wall in ("left", "top") else before > 0
            assert into_wall and before * after < 0, (event, before, after)
    assert checked > 0


def test_collision_events_conserve_momentum_in_videos(videos):
    checked = 0
    for video in videos.values():
        meta = video.metadata
        involved = Counter((e.frame, i) for e in meta.collisions for i in e.object_ids)
        for event in meta.collisions:
            ids = event.object_ids
            if event.kind != "object" or any(involved[event.frame, i] > 1 for i in ids):
                continue  # only isolated pair collisions conserve the pair's momentum
            before = sum(
                meta.objects[i - 1].mass * np.array(meta.frames[event.frame - 1][i - 1].velocity_px) for i in ids
            )
            after = sum(meta.objects[i - 1].mass * np.array(meta.frames[event.frame][i - 1].velocity_px) for i in ids)
            assert np.allclose(before, after)
            checked += 1
        for event in meta.collisions:  # isolated wall bounces keep the speed
            if event.kind == "wall" and involved[event.frame, event.object_ids[0]] == 1:
                (i,) = event.object_ids
                assert math.hypot(*meta.frames[event.frame][i - 1].velocity_px) == pytest.approx(
                    math.hypot(*meta.frames[event.frame - 1][i - 1].velocity_px)
                )
    assert checked > 0


def test_metadata_json_round_trip():
    meta = generate_video("hard", 2, 8).metadata
    text = meta.to_json()
    assert VideoMetadata.from_json(text) == meta
    assert '"collisions"' in text and '"visible_fraction"' in text


def test_numpy_sizes_and_lengths_give_json_writable_metadata():
    meta = generate_video("easy", np.int64(3), np.int64(4), (np.int64(48), np.int64(40))).metadata
    assert (meta.num_frames, meta.height, meta.width) == (4, 48, 40)
    assert VideoMetadata.from_json(meta.to_json()) == meta


def test_unknown_level_lists_levels():
    with pytest.raises(ValueError, match="easy, medium, hard"):
        generate_video("impossible", 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shapes": ()}, "shapes and sizes must each name at least one"),
        ({"textured_fraction": 1.5}, r"textured_fraction must be in \[0, 1\], got 1.5"),
        ({"min_speed": 0.05, "max_speed": 0.01}, "need 0 <= min_speed <= max_speed"),
        ({"pan_speed": -0.01}, "need pan_speed >= 0 and collider_scale > 0"),
        ({"collider_scale": 0.0}, "need pan_speed >= 0 and collider_scale > 0"),
    ],
)
def test_a_custom_level_with_impossible_settings_is_refused_when_defined(change, message):
    """Not later, inside the generator's random draws (or never, giving videos that are not what was asked)."""
    import dataclasses

    with pytest.raises(ValueError, match=f"level 'medium': {message}"):
        dataclasses.replace(get_level("medium"), **change)


def test_camera_offsets_say_where_the_background_moved():
    """Under a pan, background pixels of frame t are frame 0's shifted by the recorded whole-pixel offset."""
    video = generate_video("hard", 3, 24)
    metadata = video.metadata
    assert metadata.camera_offsets_px[0] == (0, 0) and len(metadata.camera_offsets_px) == 24
    assert metadata.camera_offsets_px[-1] != (0, 0), "this video pans"
    height, width = metadata.height, metadata.width
    for t in (5, 23):
        dx, dy = metadata.camera_offsets_px[t]
        ys, xs = np.mgrid[0:height, 0:width]  # [H, W] pixel coordinates of frame t
        y0, x0 = ys + dy, xs + dx  # the same background point in frame 0
        inside = (y0 >= 0) & (y0 < height) & (x0 >= 0) & (x0 < width)
        both = inside.copy()
        both[inside] = (video.masks[t][inside] == 0) & (video.masks[0][y0[inside], x0[inside]] == 0)
        assert both.sum() > height * width // 4
        np.testing.assert_array_equal(video.frames[t][both], video.frames[0][y0[both], x0[both]])
    static = generate_video("medium", 3, 6).metadata
    assert static.camera_offsets_px == ((0, 0),) * 6
