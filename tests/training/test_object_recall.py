"""``training.object_recall``: per-object best overlaps, grouped by the synthetic metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from plugins import VideoSlotModel
from training.configs import get_config
from training.datasets import build_dataset
from training.datasets.export import write_sequence
from training.datasets.synthetic import generate_video
from training.object_recall import (
    ObjectOverlap,
    best_overlap_per_object,
    format_recall,
    group_recall,
    main,
    object_overlaps,
    slot_switches_per_object,
)


def test_best_overlap_is_taken_over_the_whole_video() -> None:
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    ids[:, :2, :2] = 5  # object 5: 4 pixels in each of 2 frames
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 1  # frame 0: slot 1 covers the object exactly
    labels[1, :2, :2] = 2  # frame 1: slot 2 takes it over (a swap)
    assert best_overlap_per_object(labels, ids) == {5: pytest.approx(0.5)}  # 4 / (8 + 4 - 4) for either slot
    labels[1, :2, :2] = 1
    assert best_overlap_per_object(labels, ids) == {5: pytest.approx(1.0)}


def test_group_recall_counts_found_objects_per_attribute_value() -> None:
    overlaps = [
        ObjectOverlap("v", 1, {"size": "small", "texture": "flat", "shape": "star"}, 0.2),
        ObjectOverlap("v", 2, {"size": "small", "texture": "noise", "shape": "circle"}, 0.8),
        ObjectOverlap("v", 3, {"size": "large", "texture": "flat", "shape": "circle"}, 0.9),
    ]
    rows = {row.value: row for row in group_recall(overlaps, "size")}
    assert rows["all"].objects == 3 and rows["all"].found == pytest.approx(2 / 3)
    assert rows["small"].mean_best_iou == pytest.approx(0.5) and rows["small"].found == pytest.approx(0.5)
    assert rows["large"].found == 1.0
    table = format_recall(overlaps)
    assert "size=small" in table and "texture=noise" in table and "shape=star" in table
    assert table.count(" all ") == 1


def test_object_overlaps_cover_every_object_of_each_video() -> None:
    model = VideoSlotModel(**get_config("tiny").model)
    dataset = build_dataset("synthetic:easy", "val", 3, model.image_size)
    overlaps = object_overlaps(model, dataset, max_videos=2)
    expected = sum(len(set(dataset[i].masks.unique().tolist()) - {0}) for i in range(2))  # type: ignore[union-attr]
    assert len(overlaps) == expected
    assert all(0.0 <= o.best_iou <= 1.0 and o.attributes["size"] in ("medium", "large") for o in overlaps)


def test_cli_prints_the_table_and_rejects_data_without_metadata(tmp_path, capsys) -> None:
    model = VideoSlotModel(**get_config("tiny").model)
    model.save_pretrained(tmp_path / "model")
    chart = tmp_path / "recall.png"
    argv = ["--model", str(tmp_path / "model"), "--data", "synthetic:easy", "--videos", "1", "--plot", str(chart)]
    assert main(argv) == 0
    assert "shape=" in capsys.readouterr().out
    with Image.open(chart) as image:  # a title, a legend and one line per group: all, 2 sizes, 1 texture, shapes
        assert image.format == "PNG" and image.height > 18 * 5
    davis = tmp_path / "davis"
    write_sequence(davis, "seq0", generate_video("easy", 3, 4, (32, 32)))  # a generated folder keeps its metadata
    assert main(["--model", str(tmp_path / "model"), "--data", f"davis:{davis}"]) == 0
    assert "shape=" in capsys.readouterr().out
    (davis / "metadata" / "seq0.json").unlink()  # masks, but nothing to group the objects by
    assert main(["--model", str(tmp_path / "model"), "--data", f"davis:{davis}"]) == 2
    assert "seq0: per-object recall needs masks and synthetic metadata" in capsys.readouterr().err


def test_slot_switches_count_changes_of_the_slot_holding_most_of_an_object() -> None:
    ids = torch.zeros(5, 4, 4, dtype=torch.long)
    ids[:, :2, :2] = 3  # object 3 in every frame
    ids[0, 3, 3] = ids[1, 3, 3] = ids[4, 3, 3] = 7  # object 7: frames 0, 1 and 4 (hidden in 2 and 3)
    labels = torch.zeros(5, 4, 4, dtype=torch.long)
    labels[:, :2, :2] = torch.tensor([1, 1, 2, 2, 1]).view(5, 1, 1)  # object 3 held by slot 1, 1, 2, 2, 1
    labels[2, 0, 0] = 1  # frame 2: one pixel of slot 1 against three of slot 2: slot 2 still holds it
    labels[4, 3, 3] = 4  # object 7: slot 0 in frames 0 and 1, then back from hiding in slot 4: a switch
    labels[0, 1, 1] = 3  # frame 0: object 3 split 3 pixels of slot 1 against 1 of slot 3: slot 1 holds it
    switches = slot_switches_per_object(labels, ids)
    assert switches == {3: (2, 4), 7: (1, 2)}
    overlaps = [
        ObjectOverlap("v", 3, {"size": "small", "texture": "flat", "shape": "star"}, 0.5, *switches[3]),
        ObjectOverlap("v", 7, {"size": "large", "texture": "flat", "shape": "circle"}, 0.9, *switches[7]),
    ]
    rows = {row.value: row for row in group_recall(overlaps, "size")}
    assert rows["all"].switches_per_100 == pytest.approx(50.0) and rows["large"].switches_per_100 == 50.0
    assert "slot switches / 100 steps" in format_recall(overlaps)
    ties = torch.zeros(2, 1, 2, dtype=torch.long)
    ties[:] = 9  # an object of 2 pixels, split evenly between slots 2 and 5 in both frames
    tied = torch.tensor([[[2, 5]], [[5, 2]]])
    assert slot_switches_per_object(tied, ties) == {9: (0, 1)}, "a tie goes to the lowest slot both times"
    single = torch.zeros(3, 2, 2, dtype=torch.long)
    single[1, 0, 0] = 4  # visible in one frame only: no step
    assert slot_switches_per_object(torch.zeros(3, 2, 2, dtype=torch.long), single) == {4: (0, 0)}


def test_the_chart_is_wide_enough_for_a_long_title() -> None:
    from PIL import ImageDraw

    from training.bar_chart import FONT_SIZE
    from training.fonts import text_font
    from training.object_recall import GroupRecall
    from training.recall_chart import draw_recall_chart

    title = "a_rather_long_folder_name_for_experiments_run_2026_12_06_smoothsa_cnn_grid32 on synthetic:medium"
    rows = [GroupRecall("size", "small", 1, 0.2, 0.0, 0.0)]
    image = draw_recall_chart(rows, title, "1 object of 4 videos, attention masks")
    needed = ImageDraw.Draw(image).textlength(title, font=text_font(FONT_SIZE))
    assert image.width >= needed + 10
    right = np.asarray(image)[:30, -8:]  # the top right corner, beside the end of the title
    assert (right == 255).all()
