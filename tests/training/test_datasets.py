"""Tests of build_dataset and its datasets, the generate CLI and the error messages. All data is built in tmp dirs."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from davis_sample import davis_root, needs_davis
from PIL import Image
from torch.utils.data import DataLoader

from training.datasets import DatasetError, VideoBatch, VideoClip, build_dataset, collate_clips, collate_frames
from training.datasets.__main__ import main as cli_main
from training.datasets.decoding import decode_video
from training.datasets.export import mp4_needs_even_size, write_mask_png, write_mp4, write_sequence
from training.datasets.synthetic import generate_video
from training.datasets.synthetic_dataset import (
    VAL_FRAMES,
    VAL_SEED_BASE,
    VAL_VIDEOS,
    SyntheticDataset,
    train_video_seed,
)

REPO = Path(__file__).resolve().parents[2]
DECORD = pytest.param(
    "decord",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("decord") is None, reason="decord is not installed (the x86_64 wheels only)"
    ),
)


def _davis_dir(tmp_path: Path, videos: int = 2, frames: int = 6, size: int = 32) -> tuple[Path, list]:
    out = tmp_path / "gen"
    generated = []
    for i in range(videos):
        video = generate_video("medium", 100 + i, frames, (size, size))
        write_sequence(out, f"seq{i}", video)
        generated.append(video)
    return out, generated


def _video_dir(tmp_path: Path, frames: int = 8, with_masks: bool = True) -> tuple[Path, np.ndarray, np.ndarray]:
    video = generate_video("easy", 5, frames, (32, 64))  # decord mis-decodes some widths, e.g. 48
    folder = tmp_path / "videos"
    folder.mkdir()
    write_mp4(folder / "clip.mp4", video.frames)
    if with_masks:
        (folder / "clip").mkdir()
        for t, ids in enumerate(video.masks):
            write_mask_png(folder / "clip" / f"{t:05d}.png", ids)
    return folder, video.frames, video.masks


# --- synthetic ---------------------------------------------------------------------------------------------------


def test_synthetic_train_clips_shapes_and_reproducible_windows():
    dataset = build_dataset("synthetic:easy", "train", clip_length=5, image_size=(32, 40), seed=3)
    torch.manual_seed(0)
    clip = dataset[7]
    assert isinstance(clip, VideoClip) and clip.metadata is not None
    assert clip.frames.shape == (5, 3, 32, 40) and clip.frames.dtype == torch.float32
    assert clip.frames.min() >= 0.0 and clip.frames.max() <= 1.0
    assert clip.masks is not None and clip.masks.shape == (5, 32, 40) and clip.masks.dtype == torch.int64
    torch.manual_seed(0)
    again = dataset[7]
    assert again.start == clip.start and torch.equal(again.frames, clip.frames)
    starts = {dataset[7].start for _ in range(60)}
    assert starts == {0, 5, 10, 15}, "train clips are the video's non-overlapping 5-frame chunks, all drawn"
    video = generate_video("easy", train_video_seed(3, 7), 24, (32, 40))
    assert torch.equal(clip.masks, torch.from_numpy(video.masks[clip.start : clip.start + 5]).long())


def test_synthetic_seeds_and_fixed_val_set():
    a = build_dataset("synthetic:medium", "train", 4, (32, 32), seed=0)
    b = build_dataset("synthetic:medium", "train", 4, (32, 32), seed=1)
    assert not torch.equal(a[0].masks, b[0].masks)
    val0 = build_dataset("synthetic:medium", "val", None, (32, 32), seed=0)
    val1 = build_dataset("synthetic:medium", "val", None, (32, 32), seed=99)
    assert len(val0) == VAL_VIDEOS
    first = val0[0]
    assert first.start == 0 and first.frames.shape[0] == VAL_FRAMES
    assert torch.equal(first.frames, val1[0].frames)
    assert first.metadata is not None and first.metadata.seed == VAL_SEED_BASE
    assert train_video_seed((1 << 30) - 1, (1 << 32) - 1) < VAL_SEED_BASE  # train and val seeds never meet
    with pytest.raises(ValueError):
        train_video_seed(1 << 30, 0)


def test_dataloader_with_workers_collates_and_is_reproducible():
    dataset = build_dataset("synthetic:hard", "train", 4, (32, 32), seed=0)

    def first_batch() -> VideoBatch:
        torch.manual_seed(123)
        loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_clips)
        return next(iter(loader))

    batch = first_batch()
    assert batch.frames.shape == (3, 4, 3, 32, 32) and batch.masks is not None and batch.masks.shape == (3, 4, 32, 32)
    assert batch.names == ["hard-train-00000", "hard-train-00001", "hard-train-00002"]
    assert len(batch.metadata) == 3
    again = first_batch()
    assert again.starts == batch.starts and torch.equal(again.frames, batch.frames)
    moved = batch.to("cpu")
    assert moved.frames.device.type == "cpu" and moved.names == batch.names
    assert pickle.loads(pickle.dumps(collate_clips)) is collate_clips


def test_collate_rejects_mixed_clips():
    clip = VideoClip(torch.zeros(2, 3, 4, 4), None, "a")
    longer = VideoClip(torch.zeros(3, 3, 4, 4), None, "b")
    labelled = VideoClip(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), "c")
    assert collate_clips([clip, clip]).masks is None
    with pytest.raises(ValueError, match="batch_size=1"):
        collate_clips([clip, longer])
    with pytest.raises(ValueError, match="labelled and unlabelled"):
        collate_clips([clip, labelled])


def test_training_batches_frames_of_labelled_and_unlabelled_clips_together():
    """Training reads only frames, so a ``videos:`` folder where only some videos have masks still trains."""
    unlabelled = VideoClip(torch.zeros(2, 3, 4, 4), None, "a")
    labelled = VideoClip(torch.ones(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), "c")
    batch = collate_frames([unlabelled, labelled])
    assert batch.masks is None and batch.frames.shape == (2, 2, 3, 4, 4) and batch.names == ["a", "c"]
    assert labelled.masks is not None, "the clips themselves are not changed"


# --- generate CLI and davis: -------------------------------------------------------------------------------------


def test_generate_cli_writes_davis_layout_that_loads_back(tmp_path):
    out = tmp_path / "ds"
    cli_main(
        [
            "generate",
            "--level",
            "medium",
            "--videos",
            "2",
            "--frames",
            "6",
            "--size",
            "32",
            "--out",
            str(out),
            "--seed",
            "4",
            "--mp4",
        ]
    )
    seq = out / "JPEGImages" / "32p" / "medium-00001"
    assert sorted(p.name for p in seq.iterdir()) == [f"{t:05d}.jpg" for t in range(6)]
    mask_file = out / "Annotations" / "32p" / "medium-00001" / "00003.png"
    assert Image.open(mask_file).mode == "P"
    assert (out / "metadata" / "medium-00001.json").is_file() and (out / "videos" / "medium-00001.mp4").is_file()
    expected = generate_video("medium", train_video_seed(4, 1), 6, (32, 32))
    dataset = build_dataset(f"davis:{out}", "val", None, (32, 32))
    clip = dataset[1]
    assert clip.name == "medium-00001" and clip.masks is not None
    assert torch.equal(clip.masks, torch.from_numpy(expected.masks).long())
    frames = torch.from_numpy(expected.frames).permute(0, 3, 1, 2).float() / 255
    assert (clip.frames - frames).abs().mean() < 0.03  # JPEG quality 95
    videos = build_dataset(f"videos:{out / 'videos'}", "val", None, (32, 32))
    assert len(videos) == 2 and videos[1].frames.shape == (6, 3, 32, 32)
    assert torch.equal(videos[1].masks, clip.masks)  # the mp4s are labelled: their masks sit beside them
    assert (videos[1].frames - frames).abs().mean() < 0.03  # 4:4:4, level with the JPEG frames


def test_generate_cli_writes_the_validation_videos_every_evaluation_scores(tmp_path, capsys):
    out = tmp_path / "val"
    args = ["generate", "--level", "medium", "--videos", "2", "--frames", "5", "--size", "32", "--out", str(out)]
    cli_main([*args, "--split", "val"])
    on_disk = build_dataset(f"davis:{out}", "val", None, (32, 32))
    generated = SyntheticDataset("medium", "val", None, (32, 32), num_videos=2, num_frames=5)
    assert [clip.name for clip in on_disk] == ["medium-val-00000", "medium-val-00001"]
    for index in range(2):
        assert torch.equal(on_disk[index].masks, generated[index].masks)
        assert (on_disk[index].frames - generated[index].frames).abs().mean() < 0.03  # JPEG quality 95
    with pytest.raises(SystemExit):
        cli_main([*args, "--split", "val", "--seed", "3", "--overwrite"])
    assert "validation videos (--split val) are fixed" in capsys.readouterr().err


def test_generate_cli_entry_point_is_deterministic(tmp_path):
    for name in ("a", "b"):
        args = [
            "generate",
            "--level",
            "easy",
            "--videos",
            "1",
            "--frames",
            "3",
            "--size",
            "16",
            "--out",
            str(tmp_path / name),
        ]
        subprocess.run([sys.executable, "-m", "training.datasets", *args], check=True, cwd=REPO, capture_output=True)
    rel = Path("Annotations/16p/easy-00000/00002.png")
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    meta = Path("metadata/easy-00000.json")
    assert (tmp_path / "a" / meta).read_text() == (tmp_path / "b" / meta).read_text()


def test_davis_accepts_parent_of_davis_folder_and_samples_windows(tmp_path):
    out, generated = _davis_dir(tmp_path / "root")
    (out.parent / "DAVIS").symlink_to(out)
    dataset = build_dataset(f"davis:{out.parent}", "train", 3, (16, 16))
    torch.manual_seed(1)
    starts = {dataset[0].start for _ in range(20)}
    assert starts == {0, 3}  # 6 frames: two non-overlapping 3-frame chunks
    clip = dataset[0]
    assert clip.frames.shape == (3, 3, 16, 16) and clip.masks is None  # training reads only frames
    val = build_dataset(f"davis:{out}", "val", 4, (16, 16))
    assert val[0].start == 0 and val[0].frames.shape[0] == 4
    masks = val[0].masks
    assert masks is not None and masks.shape == (4, 16, 16)
    assert set(masks.unique().tolist()) <= set(np.unique(generated[0].masks).tolist())  # nearest: no new ids


def test_davis2016_style_binary_masks_and_frames_only(tmp_path):
    root = tmp_path / "DAVIS"
    frames_dir, masks_dir = root / "JPEGImages" / "480p" / "bear", root / "Annotations" / "480p" / "bear"
    frames_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((24, 40, 3), 60 * t, np.uint8)).save(frames_dir / f"{t:05d}.jpg")
        mask = np.zeros((24, 40), np.uint8)
        mask[5:15, 12:30] = 255
        Image.fromarray(mask, mode="L").save(masks_dir / f"{t:05d}.png")
    clip = build_dataset(f"davis:{tmp_path}", "val", None, (24, 24))[0]  # centre crop 40 -> 24 wide
    assert clip.masks is not None and set(clip.masks.unique().tolist()) == {0, 1}
    assert int(clip.masks[0].sum()) == 10 * 18
    import shutil

    shutil.rmtree(root / "Annotations")
    assert build_dataset(f"davis:{root}", "val", None, (24, 24))[0].masks is None


def test_center_crop_removes_the_sides(tmp_path):
    root = tmp_path / "d"
    seq = root / "JPEGImages" / "480p" / "s"
    seq.mkdir(parents=True)
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, :20] = 255  # a white left third
    Image.fromarray(image).save(seq / "00000.png")
    cropped = build_dataset(f"davis:{root}", "val", None, (20, 20))[0]
    squashed = build_dataset(f"davis:{root}", "val", None, (20, 20), center_crop=False)[0]
    assert cropped.frames.max() < 0.05 and squashed.frames[..., :5].min() > 0.95


@needs_davis
def test_real_davis2016_loads():
    root = davis_root()
    train = build_dataset(f"davis:{root}", "train", 4, (64, 64))
    assert len(train) >= 1 and train[0].frames.shape == (4, 3, 64, 64) and train[0].masks is None
    clip = build_dataset(f"davis:{root}", "val", 4, (64, 64))[0]
    assert clip.frames.shape == (4, 3, 64, 64) and clip.masks is not None
    assert set(clip.masks.unique().tolist()) == {0, 1}
    assert 0.0 < clip.masks.float().mean() < 0.5


# --- videos: -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("full_chroma", [True, False], ids=["yuv444", "yuv420"])
@pytest.mark.parametrize("backend", [DECORD, "pyav"])
def test_mp4_decodes_with_both_backends(tmp_path, backend, full_chroma):
    """Both the project's own 4:4:4 files and 4:2:0 ones (what cameras record) decode; 4:2:0 loses colour at edges."""
    video = generate_video("easy", 5, 8, (32, 64))
    write_mp4(tmp_path / "clip.mp4", video.frames, full_chroma=full_chroma)
    decoded = decode_video(tmp_path / "clip.mp4", lambda n: range(n), backend)
    assert decoded.backend == backend and decoded.frames.shape == video.frames.shape
    assert np.abs(decoded.frames.astype(float) - video.frames).mean() < (2 if full_chroma else 6)


def test_videos_spec_loads_masks_and_falls_back_to_pyav(tmp_path, monkeypatch):
    folder, _, masks = _video_dir(tmp_path)
    clip = build_dataset(f"videos:{folder}", "val", None, (32, 64))[0]
    assert clip.name == "clip" and clip.frames.shape == (8, 3, 32, 64)
    assert clip.masks is not None and torch.equal(clip.masks, torch.from_numpy(masks).long())
    assert clip.masks.max() >= 2
    monkeypatch.setitem(sys.modules, "decord", None)  # "import decord" now raises ImportError
    decoded = decode_video(folder / "clip.mp4", lambda n: range(2, 5))
    assert decoded.backend == "pyav" and decoded.indices == range(2, 5)
    fallback = build_dataset(f"videos:{folder}", "val", None, (32, 64))[0]
    assert torch.allclose(fallback.frames, clip.frames, atol=0.02)
    torch.manual_seed(0)
    train = build_dataset(f"videos:{folder}", "train", 3, (16, 16))[0]
    assert train.frames.shape == (3, 3, 16, 16) and train.masks is None  # training reads only frames


# --- errors ------------------------------------------------------------------------------------------------------


def test_unknown_scheme_and_level_are_listed(tmp_path):
    with pytest.raises(DatasetError, match=r"known schemes: synthetic:, davis:, videos:$"):
        build_dataset("kinetics:/data", "train", 4, (64, 64))
    with pytest.raises(DatasetError, match=rf"name its kind: davis:{tmp_path} or videos:{tmp_path}"):
        build_dataset(str(tmp_path), "train", 4, (64, 64))  # a bare folder
    for scheme in ("davis", "videos"):
        with pytest.raises(DatasetError, match=rf"'{scheme}:' names no folder"):
            build_dataset(f"{scheme}:", "train", 4, (64, 64))
    with pytest.raises(ValueError, match="known levels: easy, medium, hard"):
        build_dataset("synthetic:extreme", "train", 4, (64, 64))


@pytest.mark.parametrize("backend", ["auto", DECORD, "pyav"])
def test_corrupt_video_names_the_file(tmp_path, backend):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DatasetError, match=r"broken\.mp4.*cannot decode"):
        decode_video(folder / "broken.mp4", lambda n: range(n), backend)
    if backend == "auto":
        with pytest.raises(DatasetError, match=r"broken\.mp4"):
            build_dataset(f"videos:{folder}", "val", None, (16, 16))[0]


def test_a_missing_mask_leaves_its_frame_void(tmp_path):
    """A frame without a mask among annotated ones is not scored (sparse annotation): its mask is all void."""
    out, _ = _davis_dir(tmp_path)
    (out / "Annotations" / "32p" / "seq1" / "00004.png").unlink()
    masks = build_dataset(f"davis:{out}", "val", None, (32, 32))[1].masks
    assert masks is not None and bool((masks[4] == -1).all()) and not bool((masks[:4] == -1).all())
    folder, _, _ = _video_dir(tmp_path)
    (folder / "clip" / "00005.png").unlink()
    masks = build_dataset(f"videos:{folder}", "val", None, (32, 32))[0].masks
    assert masks is not None and bool((masks[5] == -1).all()) and not bool((masks[:5] == -1).all())


def test_mask_size_mismatch_names_the_file(tmp_path):
    out, _ = _davis_dir(tmp_path)
    bad = out / "Annotations" / "32p" / "seq0" / "00002.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(bad)
    with pytest.raises(DatasetError, match=rf"{bad}.*does not match frame size"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))[0]
    folder, _, _ = _video_dir(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "clip" / "00000.png")
    with pytest.raises(DatasetError, match=r"clip/00000\.png.*does not match frame size"):
        build_dataset(f"videos:{folder}", "val", None, (32, 32))[0]


def test_empty_and_missing_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'empty'}: no video files .* directly in this folder$"):
        build_dataset(f"videos:{tmp_path / 'empty'}", "train", 4, (16, 16))
    (tmp_path / "empty" / "day1").mkdir()
    (tmp_path / "empty" / "day1" / "cam.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"directly in this folder \(subfolders are not searched: day1 hold videos"):
        build_dataset(f"videos:{tmp_path / 'empty'}", "train", 4, (16, 16))
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist"):
        build_dataset(f"videos:{tmp_path / 'nowhere'}", "train", 4, (16, 16))
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'empty'}: no JPEGImages"):
        build_dataset(f"davis:{tmp_path / 'empty'}", "train", 4, (16, 16))
    with pytest.raises(DatasetError, match=r"nowhere: folder does not exist"):
        build_dataset(f"davis:{tmp_path / 'nowhere'}", "train", 4, (16, 16))
    seq = tmp_path / "d" / "JPEGImages" / "64p" / "hollow"
    seq.mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"{seq}: empty folder"):
        build_dataset(f"davis:{tmp_path / 'd'}", "train", 4, (16, 16))


def test_clip_longer_than_video_names_the_source(tmp_path):
    out, _ = _davis_dir(tmp_path, frames=3)
    with pytest.raises(DatasetError, match=r"seq0: 3 frames, fewer than clip_length=5"):
        build_dataset(f"davis:{out}", "train", 5, (32, 32))
    folder, _, _ = _video_dir(tmp_path, frames=4, with_masks=False)
    with pytest.raises(DatasetError, match=r"clip\.mp4 \(4\)"):  # at construction, from the file's header
        build_dataset(f"videos:{folder}", "train", 6, (32, 32))
    with pytest.raises(DatasetError, match=r"clip\.mp4: video has 4 frames, fewer than val_frames=6"):
        build_dataset(f"videos:{folder}", "val", 6, (32, 32))[0]  # validation: when loading


def test_a_missing_frame_or_a_mask_without_its_frame_names_the_file(tmp_path):
    """A gap in the numbering would join two moments of a video as if they were consecutive."""
    out, _ = _davis_dir(tmp_path)
    masks = out / "Annotations" / "32p" / "seq0"
    (masks / "00006.png").write_bytes((masks / "00005.png").read_bytes())  # frames 0-5 only
    with pytest.raises(DatasetError, match=rf"{masks}: masks without a frame in .*: 00006\.png"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))
    (masks / "00006.png").unlink()
    gone = out / "JPEGImages" / "32p" / "seq1" / "00003.jpg"
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"{gone}: frame is missing \(the sequence jumps from 00002\.jpg"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))


def test_a_sequence_annotated_on_its_first_frame_only_trains_and_is_left_out_of_evaluation(tmp_path):
    """The semi-supervised convention (DAVIS test-dev): frames for training, no masks to score against."""
    from training.datasets.selection import labelled_videos

    out, _ = _davis_dir(tmp_path)
    for mask in sorted((out / "Annotations" / "32p" / "seq1").glob("*.png"))[1:]:
        mask.unlink()
    train = build_dataset(f"davis:{out}", "train", 2, (32, 32))
    assert train[1].frames.shape == (2, 3, 32, 32) and train[1].masks is None
    val = build_dataset(f"davis:{out}", "val", None, (32, 32))
    assert val[1].masks is None and val[0].masks is not None
    kept, left_out = labelled_videos(val)
    assert left_out == 1 and [kept[i].name for i in range(len(kept))] == ["seq0"]


def test_frames_numbered_without_padding_are_read_in_numeric_order(tmp_path):
    root = tmp_path / "DAVIS" / "JPEGImages" / "480p" / "seq"
    root.mkdir(parents=True)
    for index in range(12):
        Image.fromarray(np.full((8, 8, 3), index * 20, np.uint8)).save(root / f"{index}.png")
    clip = build_dataset(f"davis:{tmp_path / 'DAVIS'}", "val", None, (8, 8))[0]
    means = clip.frames.mean(dim=(1, 2, 3))  # [T]
    assert torch.all(means[1:] > means[:-1]), "frame 10 must come after frame 9, not after frame 1"


def test_exported_frames_keep_their_colours(tmp_path):
    """No chroma subsampling: with it the small saturated frames lost colour at every object edge."""
    out, generated = _davis_dir(tmp_path, videos=1, frames=2, size=64)
    read = build_dataset(f"davis:{out}", "val", None, (64, 64))[0].frames  # [T, 3, H, W] in [0, 1]
    original = torch.from_numpy(generated[0].frames).permute(0, 3, 1, 2).float() / 255
    mse = float(((read - original) ** 2).mean())
    psnr = 10 * np.log10(1 / mse)
    assert psnr > 33, f"{psnr:.1f} dB"


def test_grayscale_instance_ids_are_refused_not_read_as_background(tmp_path):
    from training.datasets.images import read_mask

    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3], ids[5:7, 5:7] = 1, 2
    Image.fromarray(ids).save(tmp_path / "ids.png")  # mode L with values 1 and 2
    with pytest.raises(DatasetError, match=r"ids\.png.*values \(1, 2\) are all below 128.*palette"):
        read_mask(tmp_path / "ids.png")
    binary = np.where(ids > 0, 255, 0).astype(np.uint8)
    Image.fromarray(binary).save(tmp_path / "binary.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "binary.png"), (ids > 0).astype(np.uint8))
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(tmp_path / "threes.png")  # no zero (background) at all
    with pytest.raises(DatasetError, match=r"threes\.png.*values \(3\) are all below 128"):
        read_mask(tmp_path / "threes.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")  # no object in this frame: fine
    assert not read_mask(tmp_path / "empty.png").any()


def test_binary_mask_saved_with_a_gray_palette_is_read_as_binary_not_void(tmp_path):
    """An editor that saves a DAVIS 2016 mask as a palette PNG keeps 255 at gray (255, 255, 255): the object."""
    from training.datasets.export import davis_palette
    from training.datasets.images import read_mask

    gray_palette = [v for value in range(256) for v in (value, value, value)]
    binary = np.zeros((8, 8), np.uint8)
    binary[2:6, 2:6] = 255
    gray = Image.fromarray(binary, mode="L").convert("P")  # Pillow's L->P keeps the indices, gray palette
    assert gray.mode == "P"
    gray.putpalette(gray_palette)
    gray.save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "gray.png"), (binary > 0).astype(np.uint8))

    davis = Image.fromarray(binary, mode="L").convert("P")
    davis.putpalette(davis_palette())  # the DAVIS 2017 palette: index 255 is void (224, 224, 192)
    davis.save(tmp_path / "void.png")
    assert set(np.unique(read_mask(tmp_path / "void.png")).tolist()) == {0, -1}  # 255: void, not an object

    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3], ids[5:7, 5:7], ids[0, 7] = 1, 2, 255  # instance ids and a void pixel, gray palette
    small = Image.fromarray(ids, mode="L").convert("P")
    small.putpalette(gray_palette)
    small.save(tmp_path / "ids.png")
    expected = np.where(ids == 255, -1, ids.astype(np.int16))  # index 255 is void
    np.testing.assert_array_equal(read_mask(tmp_path / "ids.png"), expected)


def test_generate_cli_refuses_to_mix_datasets_and_overwrites_only_when_told(tmp_path, capsys):
    """A second dataset written into the first one's folder would mix frames, masks and metadata of both."""
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "2", "--frames", "4", "--out", str(out)]
    cli_main([*base, "--size", "32"])
    (out / "notes.txt").write_text("kept")
    with pytest.raises(SystemExit):
        cli_main([*base, "--size", "16"])
    assert "pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["32p"]
    again = ["generate", "--level", "easy", "--videos", "1", "--frames", "2", "--size", "16", "--out", str(out)]
    cli_main([*again, "--overwrite"])
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["16p"]
    assert sorted(p.name for p in (out / "metadata").iterdir()) == ["easy-00000.json"]
    assert (out / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "foreign",
    ["videos/my_recording.mp4", "JPEGImages/480p/bear/00000.jpg", "metadata/notes.json", "Annotations/readme.txt"],
)
def test_generate_cli_overwrite_refuses_folders_it_did_not_write(tmp_path, capsys, foreign):
    """A user's own videos or a real DAVIS root in --out are not a generated dataset: --overwrite keeps them."""
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "1", "--frames", "2", "--size", "16", "--out", str(out)]
    cli_main(base)
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text("a user's file")
    with pytest.raises(SystemExit):
        cli_main([*base, "--overwrite"])
    error = capsys.readouterr().err
    assert f"but {out / Path(foreign).parts[0] / Path(foreign).parts[1]}" in error and "is not part of one" in error
    assert (out / foreign).read_text() == "a user's file" and (out / "metadata" / "easy-00000.json").is_file()


def test_generate_cli_overwrite_replaces_a_dataset_a_stopped_run_left(tmp_path, monkeypatch):
    """A run killed while writing a video's frames left that video's folders: they are generate's own. (A kill
    never cleans up: the removal of the partial video a Ctrl-C gets is turned off here.)"""
    import training.datasets.__main__ as generate_command
    import training.datasets.export as export

    monkeypatch.setattr(generate_command, "remove_sequence", lambda *args: None)
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "2", "--frames", "3", "--size", "16", "--out", str(out)]
    real_write_mask = export.write_mask_png
    written: list[Path] = []

    def stopped_at_the_fifth_mask(path, ids):
        if len(written) == 4:
            raise KeyboardInterrupt
        written.append(path)
        real_write_mask(path, ids)

    monkeypatch.setattr(export, "write_mask_png", stopped_at_the_fifth_mask)
    assert cli_main(base) == 130
    monkeypatch.setattr(export, "write_mask_png", real_write_mask)
    assert len(list((out / "JPEGImages" / "16p").iterdir())) == 2  # the second video was cut short
    cli_main([*base, "--overwrite"])
    assert sorted(p.name for p in (out / "metadata").iterdir()) == ["easy-00000.json", "easy-00001.json"]


def test_generate_cli_overwrite_replaces_an_mp4_dataset_it_wrote(tmp_path):
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "2", "--frames", "2", "--size", "16", "--out", str(out)]
    cli_main([*base, "--mp4"])
    cli_main([*base[:4], "1", *base[5:], "--overwrite"])
    assert not (out / "videos").exists() and sorted(p.name for p in (out / "metadata").iterdir()) == [
        "easy-00000.json"
    ]


def test_generate_cli_names_an_out_folder_it_cannot_write(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["generate", "--videos", "1", "--frames", "2", "--out", "/proc/slotstream-data"])
    assert "--out /proc/slotstream-data: cannot write there" in capsys.readouterr().err


def test_generate_cli_checks_mp4_sizes_before_writing_anything(tmp_path, capsys, monkeypatch):
    """Odd sizes need 4:4:4 video, which only libx264 writes here; without it they are refused up front."""
    import training.datasets.__main__ as cli

    monkeypatch.setattr(cli, "mp4_needs_even_size", lambda: True)
    out = tmp_path / "data"
    with pytest.raises(SystemExit):
        cli_main(["generate", "--videos", "2", "--frames", "2", "--size", "33", "--mp4", "--out", str(out)])
    assert "even --size" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(mp4_needs_even_size(), reason="odd-sized mp4 files need libx264 (4:4:4), absent from this PyAV")
def test_odd_sized_mp4_is_written_in_full_chroma_and_reads_back(tmp_path):
    video = generate_video("easy", 5, 4, (33, 33))
    write_mp4(tmp_path / "odd.mp4", video.frames)
    decoded = decode_video(tmp_path / "odd.mp4", lambda n: range(n), "pyav")
    assert decoded.frames.shape == video.frames.shape
    assert np.abs(decoded.frames.astype(float) - video.frames).mean() < 2


def test_a_generated_folder_reads_back_with_its_metadata_and_checks_it(tmp_path):
    out, generated = _davis_dir(tmp_path, videos=1, frames=4, size=32)
    clip = build_dataset(f"davis:{out}", "val", None, (32, 32))[0]
    assert clip.metadata == generated[0].metadata
    assert build_dataset(f"davis:{out}", "train", 2, (32, 32))[0].metadata is None  # training reads only frames
    for folder in ("JPEGImages", "Annotations"):
        (out / folder / "32p" / "seq0" / ("00003.jpg" if folder == "JPEGImages" else "00003.png")).unlink()
    with pytest.raises(DatasetError, match=r"seq0\.json: describes 4 frames, the sequence has 3"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))[0]
    metadata = json.loads((out / "metadata" / "seq0.json").read_text())
    del metadata["level"]
    (out / "metadata" / "seq0.json").write_text(json.dumps(metadata))
    with pytest.raises(
        DatasetError, match=r"seq0\.json: not readable as synthetic metadata \(missing field 'level'\)"
    ):
        build_dataset(f"davis:{out}", "val", None, (32, 32))[0]
    (out / "metadata" / "seq0.json").write_text("{")
    with pytest.raises(DatasetError, match=r"seq0\.json: not readable as synthetic metadata"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))[0]


def test_an_empty_split_list_is_named_not_taken_for_an_empty_folder(tmp_path):
    out, _ = _davis_dir(tmp_path)
    listing = out / "ImageSets" / "2017" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("\n")
    with pytest.raises(DatasetError, match=rf"{listing}: lists no sequences for the val split"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))


def _names(spec: str, split: str) -> list[str]:
    return [sequence.name for sequence in build_dataset(spec, split, None, (32, 32)).sequences]


@pytest.mark.parametrize("listed", ["val", "train"])
def test_a_split_without_a_list_holds_the_sequences_the_other_list_leaves_out(tmp_path, listed):
    """With only ``val.txt``, training had read every sequence, the listed validation ones included."""
    out, _ = _davis_dir(tmp_path, videos=3, frames=3)
    listing = out / "ImageSets" / "2017" / f"{listed}.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("seq1\n")
    unlisted = "train" if listed == "val" else "val"
    assert _names(f"davis:{out}", listed) == ["seq1"]
    assert _names(f"davis:{out}", unlisted) == ["seq0", "seq2"]


def test_train_and_val_lists_that_share_a_sequence_are_refused_for_training(tmp_path):
    out, _ = _davis_dir(tmp_path, videos=3, frames=3)
    (out / "ImageSets").mkdir()
    (out / "ImageSets" / "train.txt").write_text("seq0\nseq1\n")
    (out / "ImageSets" / "val.txt").write_text("seq1\nseq2\n")
    with pytest.raises(DatasetError, match=r"the train and val lists share 1 sequence\(s\) \(seq1\), which would"):
        build_dataset(f"davis:{out}", "train", None, (32, 32))
    assert _names(f"davis:{out}", "val") == ["seq1", "seq2"]  # what the evaluation tools read: nothing is trained


def test_clips_longer_than_synthetic_videos_name_both_flags():
    with pytest.raises(
        ValueError, match=r"clips of 30 frames .* val videos of synthetic data have 24 frames.*--val-frames"
    ):
        SyntheticDataset("medium", "val", 30, (32, 32))


def test_an_interrupted_generate_keeps_its_complete_videos_and_removes_the_partial_one(tmp_path, monkeypatch, capsys):
    import training.datasets.__main__ as generate_command

    calls = []

    def interrupted_on_the_third(out, name, video, mp4=False):
        calls.append(name)
        if len(calls) < 3:
            return write_sequence(out, name, video, mp4=mp4)
        (out / "metadata").mkdir(exist_ok=True)
        (out / "metadata" / f"{name}.json").write_text(video.metadata.to_json())  # begun, as write_sequence begins
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_command, "write_sequence", interrupted_on_the_third)
    out = tmp_path / "ds"
    argv = ["generate", "--level", "easy", "--videos", "5", "--frames", "2", "--size", "16", "--out", str(out)]
    assert cli_main(argv) == 130
    assert "interrupted: 2 complete video(s)" in capsys.readouterr().err
    assert sorted(path.stem for path in (out / "metadata").iterdir()) == ["easy-00000", "easy-00001"]
    assert len(build_dataset(f"davis:{out}", "val", None, (16, 16))) == 2  # all readable


def test_an_interrupted_overwrite_leaves_the_old_dataset_as_it_was(tmp_path, monkeypatch, capsys):
    import training.datasets.__main__ as generate_command

    out = tmp_path / "ds"
    base = ["generate", "--level", "easy", "--frames", "2", "--size", "16", "--out", str(out)]
    assert cli_main([*base, "--videos", "2"]) == 0
    before = sorted(str(path.relative_to(out)) for path in out.rglob("*"))
    calls = []

    def interrupted_on_the_second(target, name, video, mp4=False):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write_sequence(target, name, video, mp4=mp4)

    monkeypatch.setattr(generate_command, "write_sequence", interrupted_on_the_second)
    assert cli_main([*base, "--videos", "3", "--overwrite"]) == 130
    assert f"interrupted: the dataset in {out} is as it was" in capsys.readouterr().err
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == before  # no staging folder left
    monkeypatch.undo()
    assert cli_main([*base, "--videos", "3", "--overwrite"]) == 0
    assert len(list((out / "metadata").iterdir())) == 3 and not list(out.glob(".generate-*"))


def test_the_spec_generate_prints_is_quoted_for_a_shell(tmp_path, capsys):
    """Copied into a command, an unquoted folder with a space split into two arguments."""
    out = tmp_path / "my videos"
    assert (
        cli_main(["generate", "--level", "easy", "--videos", "1", "--frames", "2", "--size", "32", "--out", str(out)])
        == 0
    )
    assert f"read them with --data 'davis:{out}'" in capsys.readouterr().out
