"""Videos annotated on some of their frames (YouTube-VOS annotates every 5th frame; users label a few frames of a
recording) are scored on those frames: the frames without a mask read as void, which every metric leaves out, in
video and image mode alike, and a note says how many frames are scored. A mask without a frame, two mask files for
one frame or a mask of another size are still refused, and a sequence annotated on its first frame only is still
unlabelled."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plugins.testing import TINY_MODEL, build_tiny
from training.ceiling import main as ceiling_main
from training.ceiling import mask_size_ceiling
from training.datasets import DatasetError, DavisDataset, VideoFolderDataset, build_dataset
from training.datasets.export import write_mask_png, write_mp4
from training.datasets.selection import evaluation_videos
from training.datasets.synthetic import generate_video
from training.evaluate import main as evaluate_main
from training.evaluation import evaluate, object_count, predicted_videos
from training.metrics import (
    IGNORE_ID,
    ObjectDiscoveryMetrics,
    adjusted_rand_index,
    fg_adjusted_rand_index,
    upsample_to_labels,
)
from training.object_recall import best_overlap_per_object, object_overlaps

FRAMES = 12
ANNOTATED = (0, 5, 10)
SIZE = (16, 16)  # the tiny model's input size


def _video(seed: int = 1, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``[T, H, W, 3]`` and masks ``[T, H, W]`` of a synthetic video at :data:`SIZE`."""
    video = generate_video("medium", seed, frames, SIZE)
    return video.frames, video.masks


def _sequence(root: Path, name: str, frames: np.ndarray, masks: dict[int, np.ndarray]) -> Path:
    """Writes ``name`` into the DAVIS folder ``root`` (``16p``): every frame, and the masks of the frames in
    ``masks`` only."""
    images, annotations = (root / kind / "16p" / name for kind in ("JPEGImages", "Annotations"))
    images.mkdir(parents=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(images / f"{t:05d}.jpg", quality=95)
    for t, ids in masks.items():
        write_mask_png(annotations / f"{t:05d}.png", ids)
    return root


def _sparse(root: Path, name: str = "bear", annotated: tuple[int, ...] = ANNOTATED, seed: int = 1) -> Path:
    """A DAVIS folder whose sequence ``name`` has :data:`FRAMES` frames, with masks of ``annotated`` only."""
    frames, masks = _video(seed)
    return _sequence(root, name, frames, {t: masks[t] for t in annotated})


# --- reading -----------------------------------------------------------------------------------------------------


def test_frames_without_a_mask_read_as_void_and_the_others_as_written(tmp_path: Path) -> None:
    _, masks = _video()
    root = _sparse(tmp_path)
    val = build_dataset(f"davis:{root}", "val", None, SIZE)
    assert isinstance(val, DavisDataset) and val.has_masks(0)
    assert val.annotated_frames(0) == (frozenset(ANNOTATED), FRAMES)
    assert val.sequences[0].masks is not None and len(val.sequences[0].masks) == len(ANNOTATED)  # the mask files
    clip = val[0]
    assert clip.masks is not None and clip.masks.shape == (FRAMES, *SIZE)
    for t in range(FRAMES):
        expected = torch.from_numpy(masks[t]).long() if t in ANNOTATED else torch.full(SIZE, IGNORE_ID)
        assert torch.equal(clip.masks[t], expected), t
    cut = val.first_frames(0, 7)  # frames 0-6: the masks of 0 and 5
    assert cut.masks is not None and torch.equal(cut.masks, clip.masks[:7])
    train = build_dataset(f"davis:{root}", "train", 4, SIZE)
    assert train[0].masks is None  # training reads only frames


def test_a_sequence_annotated_on_its_first_frame_only_is_still_unlabelled(tmp_path: Path) -> None:
    root = _sparse(tmp_path, "bear", annotated=(0, 5))
    _sparse(root, "libby", annotated=(0,))
    val = build_dataset(f"davis:{root}", "val", None, SIZE)
    assert isinstance(val, DavisDataset)
    assert [val.has_masks(i) for i in range(2)] == [True, False] and val[1].masks is None
    notes: list[str] = []
    videos = evaluation_videos(f"davis:{root}", SIZE, None, on_unlabelled=notes.append)
    assert len(videos) == 1  # type: ignore[arg-type]
    assert notes[0] == f"note: 1 video(s) of davis:{root} have no masks and are left out"


def test_a_single_mask_of_a_later_frame_is_a_sparse_annotation(tmp_path: Path) -> None:
    root = _sparse(tmp_path, annotated=(5,))
    val = build_dataset(f"davis:{root}", "val", None, SIZE)
    assert isinstance(val, DavisDataset) and val.annotated_frames(0) == (frozenset({5}), FRAMES)
    masks = val[0].masks
    assert masks is not None and bool((masks[5] >= 0).all()) and bool((masks[:5] == IGNORE_ID).all())


def test_a_mask_without_a_frame_is_still_refused(tmp_path: Path) -> None:
    root = _sparse(tmp_path)
    folder = root / "Annotations" / "16p" / "bear"
    write_mask_png(folder / f"{FRAMES:05d}.png", np.zeros(SIZE, np.uint8))  # frame 12 of 0-11
    with pytest.raises(DatasetError, match=rf"{folder}: masks without a frame in .*: {FRAMES:05d}\.png"):
        build_dataset(f"davis:{root}", "val", None, SIZE)


def test_two_mask_files_for_one_frame_are_still_refused(tmp_path: Path) -> None:
    root = _sparse(tmp_path)
    folder = root / "Annotations" / "16p" / "bear"
    write_mask_png(folder / "00005.PNG", np.zeros(SIZE, np.uint8))
    with pytest.raises(DatasetError, match="a second mask file for frame 00005"):
        build_dataset(f"davis:{root}", "val", None, SIZE)


def test_a_mask_of_another_size_is_still_refused(tmp_path: Path) -> None:
    root = _sparse(tmp_path)
    mask = root / "Annotations" / "16p" / "bear" / "00005.png"
    write_mask_png(mask, np.zeros((8, 16), np.uint8))
    val = build_dataset(f"davis:{root}", "val", None, SIZE)
    with pytest.raises(DatasetError, match=rf"{mask}: mask size 16x8 does not match frame size 16x16"):
        val[0]


# --- the note ----------------------------------------------------------------------------------------------------


def test_evaluation_notes_how_many_frames_have_masks(tmp_path: Path) -> None:
    frames, masks = _video(seed=2)
    root = _sparse(tmp_path, "bear")
    _sequence(root, "walk", frames, dict(enumerate(masks)))  # every frame annotated
    _sequence(root, "libby", frames, {})  # unlabelled
    spec = f"davis:{root}"
    notes: list[str] = []
    videos = evaluation_videos(spec, SIZE, None, on_unlabelled=notes.append)
    assert len(videos) == 2  # type: ignore[arg-type]
    assert notes == [
        f"note: 1 video(s) of {spec} have no masks and are left out",
        f"note: 3 of 12 frames of 1 video(s) of {spec} have masks; the others are not scored",
    ]
    notes.clear()
    evaluation_videos(spec, SIZE, 6, on_unlabelled=notes.append)  # --frames 6: frames 0-5 are scored
    assert notes[1] == f"note: 2 of 6 frames of 1 video(s) of {spec} have masks; the others are not scored"
    notes.clear()
    evaluation_videos(spec, SIZE, 1, on_unlabelled=notes.append)  # frame 0 only: every scored frame has a mask
    assert notes == [f"note: 1 video(s) of {spec} have no masks and are left out"]


def test_the_tools_print_the_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _sparse(tmp_path / "data")
    note = f"note: 3 of 12 frames of 1 video(s) of davis:{root} have masks; the others are not scored"
    build_tiny(TINY_MODEL, seed=0).save_pretrained(tmp_path / "model")
    assert evaluate_main(["--model", str(tmp_path / "model"), "--data", f"davis:{root}"]) == 0
    assert note in capsys.readouterr().err
    assert ceiling_main(["--data", f"davis:{root}", "--mask-size", "4", "--image-size", "16"]) == 0
    assert note in capsys.readouterr().err


def test_a_training_run_notes_it_for_its_evaluations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from training.configs import get_config
    from training.run_data import validation_data

    root = _sparse(tmp_path / "data")
    base = get_config("tiny")
    data = dataclasses.replace(base.data, spec=f"davis:{root}", val_spec=f"davis:{root}", val_frames=None)
    validation_data(dataclasses.replace(base, data=data))
    note = f"note: 3 of 12 frames of 1 video(s) of davis:{root} have masks; the others are not scored"
    assert f"{note} in the evaluations during training" in capsys.readouterr().out


# --- scores ------------------------------------------------------------------------------------------------------


def test_void_frames_are_neither_scored_nor_counted_hand_computed() -> None:
    """Frames 0 and 2 annotated, 1 and 3 all void (their predictions would change every score if they counted).

    Video mode, 12 points: GT sizes 3, 4, 5 (19 pairs), predicted sizes 3, 6, 3 (21 pairs), joint 3, 4, 2, 3
    (13 pairs), 66 pairs in all: E = 19 * 21 / 66, ARI = (13 - E) / (20 - E) = 153/307. Foreground, 9 points: GT
    sizes 4, 5 (16 pairs), predicted 6, 3 (18 pairs), joint 4, 2, 3 (10 pairs), 36 pairs: E = 8, FG-ARI =
    (10 - 8) / (17 - 8) = 2/9. Image mode: frame 0 ARI 7/22 (FG 1/6), frame 2 ARI 4/9 (FG 0), means over the two
    annotated frames 151/396 and 1/12.
    """
    gt = torch.tensor([[[0, 1, 1, 2, 2, 2]], [[IGNORE_ID] * 6], [[0, 0, 1, 1, 2, 2]], [[IGNORE_ID] * 6]]).unsqueeze(
        0
    )  # [1, T=4, H=1, W=6]
    pred = torch.tensor([[[0, 1, 1, 1, 2, 2]], [[3] * 6], [[0, 0, 1, 1, 1, 2]], [[0, 1, 2, 3, 0, 1]]]).unsqueeze(0)
    metrics = ObjectDiscoveryMetrics()
    metrics.update_labels(pred, gt, num_slots=4)
    scores = metrics.compute()
    assert scores.video_ari == pytest.approx(float(Fraction(153, 307)))
    assert scores.video_fg_ari == pytest.approx(float(Fraction(2, 9)))
    assert scores.image_ari == pytest.approx(float(Fraction(151, 396)))
    assert scores.image_fg_ari == pytest.approx(float(Fraction(1, 12)))
    assert (scores.num_videos, scores.num_frames, scores.num_invalid_videos, scores.num_invalid_frames) == (1, 2, 0, 0)


def test_a_video_without_a_scored_point_is_not_counted() -> None:
    metrics = ObjectDiscoveryMetrics()
    void = torch.full((1, 3, 2, 2), IGNORE_ID)
    metrics.update_labels(torch.zeros_like(void), void, num_slots=2)
    empty = metrics.compute()
    assert (empty.num_videos, empty.num_frames, empty.num_invalid_videos, empty.num_invalid_frames) == (0, 0, 0, 0)
    assert np.isnan(empty.video_ari) and np.isnan(empty.image_miou)
    gt = torch.zeros(1, 3, 2, 2, dtype=torch.long)
    gt[0, 0, 0, 0] = 4
    metrics.update_labels(gt.clamp(max=1), gt, num_slots=2)
    both = metrics.compute()  # frames 1 and 2 of the second video have no foreground
    assert (both.num_videos, both.num_frames, both.num_invalid_videos, both.num_invalid_frames) == (1, 3, 0, 2)


def test_a_sparse_sequence_scores_as_its_annotated_frames_alone(tmp_path: Path) -> None:
    """The scores of a model on the sparse sequence are those of its masks and the ground truth cut to the annotated
    frames, in both modes; scoring the other frames as background would change them."""
    root = _sparse(tmp_path)
    model = build_tiny(TINY_MODEL, seed=0)
    dataset = evaluation_videos(f"davis:{root}", model.image_size, None)
    scores = evaluate(model, dataset)
    ((batch, soft),) = list(predicted_videos(model, dataset))  # [1, T, K, h, w]
    assert batch.masks is not None
    labels = upsample_to_labels(soft, SIZE)  # [1, T, H, W]
    keep = list(ANNOTATED)
    cut = ObjectDiscoveryMetrics(mask_source=scores.mask_source)
    cut.update_labels(labels[:, keep], batch.masks[:, keep], num_slots=soft.shape[2])
    assert scores.to_dict() == pytest.approx(cut.compute().to_dict())
    assert (scores.num_videos, scores.num_frames) == (1, len(ANNOTATED))
    assert scores.video_ari == pytest.approx(adjusted_rand_index(labels[:, keep], batch.masks[:, keep]).mean())
    assert scores.video_fg_ari == pytest.approx(fg_adjusted_rand_index(labels[:, keep], batch.masks[:, keep]).mean())
    as_background = ObjectDiscoveryMetrics()
    as_background.update_labels(labels, batch.masks.clamp_min(0), num_slots=soft.shape[2])
    assert as_background.compute().video_ari != pytest.approx(scores.video_ari)  # the void frames matter
    present = {int(i) for i in torch.unique(batch.masks[0, keep])} - {0}
    assert object_count(batch.masks[0]) == len(present) > 0


def test_the_ceiling_of_a_sparse_sequence_is_that_of_its_annotated_frames(tmp_path: Path) -> None:
    """The ceiling scores ground truth per frame, so the sparse sequence and the sequence of its annotated frames
    alone score the same, with and without a slot limit."""
    frames, masks = _video()
    sparse = evaluation_videos(f"davis:{_sparse(tmp_path / 'sparse')}", SIZE, None)
    cut_root = _sequence(tmp_path / "cut", "bear", frames[list(ANNOTATED)], dict(enumerate(masks[list(ANNOTATED)])))
    cut = evaluation_videos(f"davis:{cut_root}", SIZE, None)
    for num_slots in (None, 2):
        expected = mask_size_ceiling(cut, (4, 4), num_slots=num_slots).to_dict()
        assert mask_size_ceiling(sparse, (4, 4), num_slots=num_slots).to_dict() == pytest.approx(expected)
        assert expected["num_frames"] == len(ANNOTATED)


def test_object_recall_finds_the_objects_of_the_annotated_frames(tmp_path: Path) -> None:
    """A generated folder keeps its metadata when masks are removed: recall scores the objects of the annotated
    frames, each over those frames."""
    from training.datasets.export import write_sequence

    video = generate_video("medium", 1, FRAMES, SIZE)
    write_sequence(tmp_path, "bear", video)
    for t in set(range(FRAMES)) - set(ANNOTATED):
        (tmp_path / "Annotations" / "16p" / "bear" / f"{t:05d}.png").unlink()
    model = build_tiny(TINY_MODEL, seed=0)
    dataset = evaluation_videos(f"davis:{tmp_path}", model.image_size, None)
    overlaps = object_overlaps(model, dataset)
    ((batch, soft),) = list(predicted_videos(model, dataset))
    assert batch.masks is not None
    keep = list(ANNOTATED)
    labels = upsample_to_labels(soft[0], SIZE)[keep]  # [3, H, W]
    expected = best_overlap_per_object(labels, batch.masks[0, keep])
    assert {o.object_id: o.best_iou for o in overlaps} == pytest.approx(expected) and expected


# --- videos: folders ---------------------------------------------------------------------------------------------


def test_a_video_file_masked_on_some_frames_is_scored_on_those(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    video = generate_video("easy", 3, 6, (32, 64))
    folder.mkdir()
    write_mp4(folder / "clip.mp4", video.frames)
    (folder / "clip").mkdir()
    for t in (0, 3):
        write_mask_png(folder / "clip" / f"{t:05d}.png", video.masks[t])
    val = build_dataset(f"videos:{folder}", "val", None, (32, 64))
    assert isinstance(val, VideoFolderDataset) and val.annotated_frames(0) == (frozenset({0, 3}), 6)
    masks = val[0].masks
    assert masks is not None
    for t in range(6):
        expected = torch.from_numpy(video.masks[t]).long() if t in (0, 3) else torch.full((32, 64), IGNORE_ID)
        assert torch.equal(masks[t], expected), t
    notes: list[str] = []
    evaluation_videos(f"videos:{folder}", (32, 64), None, on_unlabelled=notes.append)
    assert notes == [f"note: 2 of 6 frames of 1 video(s) of videos:{folder} have masks; the others are not scored"]
    write_mask_png(folder / "clip" / "00006.png", video.masks[0])  # frame 6 of 0-5
    with pytest.raises(DatasetError, match=r"masks without a frame: 00006\.png"):
        val[0]
