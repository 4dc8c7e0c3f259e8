"""A ``davis:`` sequence without annotations (no folder under ``Annotations/<res>/``, or one without PNG files) is
unlabelled, as a ``videos:`` video without masks is: training reads its frames and evaluation leaves it out with a
note; a sequence whose annotation folder misses some masks is annotated sparsely: its frames without a mask are
void (not scored)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from training.datasets import DavisDataset, build_dataset
from training.datasets.export import write_mask_png
from training.datasets.selection import evaluation_videos
from training.datasets.synthetic import generate_video

FRAMES = 4


def _davis(root: Path, annotated: tuple[str, ...], unannotated: tuple[str, ...]) -> Path:
    """A DAVIS folder whose ``annotated`` sequences have a mask per frame and whose ``unannotated`` ones have
    frames only (``Annotations/480p/`` exists)."""
    for index, name in enumerate(annotated + unannotated):
        video = generate_video("easy", index, FRAMES, (24, 32))
        images = root / "JPEGImages" / "480p" / name
        images.mkdir(parents=True)
        for t in range(FRAMES):
            Image.fromarray(video.frames[t]).save(images / f"{t:05d}.jpg")
        if name in annotated:
            masks = root / "Annotations" / "480p" / name
            masks.mkdir(parents=True)
            for t in range(FRAMES):
                write_mask_png(masks / f"{t:05d}.png", video.masks[t])
    return root


def test_a_sequence_without_an_annotation_folder_is_unlabelled(tmp_path: Path) -> None:
    root = _davis(tmp_path, ("bear",), ("libby",))
    val = build_dataset(f"davis:{root}", "val", None, (16, 16))
    assert isinstance(val, DavisDataset)
    assert [val.has_masks(i) for i in range(len(val))] == [True, False]
    assert val[1].masks is None and val[1].frames.shape[0] == FRAMES
    train = build_dataset(f"davis:{root}", "train", 2, (16, 16))
    assert isinstance(train, DavisDataset)
    assert [tuple(train[i].frames.shape) for i in range(len(train))] == [(2, 3, 16, 16)] * 2


def test_a_sequence_whose_annotation_folder_holds_no_png_is_unlabelled(tmp_path: Path) -> None:
    root = _davis(tmp_path, ("bear",), ("libby",))
    folder = root / "Annotations" / "480p" / "libby"
    folder.mkdir()
    (folder / "._00000.png").write_bytes(b"\x00\x05\x16\x07")  # hidden: not a mask
    (folder / "notes.txt").write_text("masks to come\n")
    val = build_dataset(f"davis:{root}", "val", None, (16, 16))
    assert isinstance(val, DavisDataset) and not val.has_masks(1) and val[1].masks is None


def test_evaluation_leaves_an_unannotated_sequence_out_with_a_note(tmp_path: Path) -> None:
    root = _davis(tmp_path, ("bear",), ("libby", "walk"))
    notes: list[str] = []
    videos = evaluation_videos(f"davis:{root}", (16, 16), None, on_unlabelled=notes.append)
    assert len(videos) == 1 and videos[0].name == "bear"  # type: ignore[arg-type]
    assert notes == [f"note: 2 video(s) of davis:{root} have no masks and are left out"]


def test_a_sequence_missing_some_masks_is_scored_on_the_others(tmp_path: Path) -> None:
    root = _davis(tmp_path, ("bear",), ())
    (root / "Annotations" / "480p" / "bear" / "00002.png").unlink()
    masks = build_dataset(f"davis:{root}", "val", None, (16, 16))[0].masks
    assert masks is not None and bool((masks[2] == -1).all())
    assert not bool((masks[[0, 1, 3]] == -1).any())
