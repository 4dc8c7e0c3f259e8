"""The metadata JSON identifies its video with small numbers that JSON readers using doubles read exactly."""

from __future__ import annotations

import json

from training.datasets.__main__ import main as cli_main
from training.datasets.synthetic import generate_video
from training.datasets.synthetic.metadata import VideoMetadata
from training.datasets.synthetic_dataset import VAL_SEED_BASE, train_video_seed


def _read_as_doubles(text: str) -> dict:
    """What jq or JavaScript make of the JSON: every number a double."""
    return json.loads(text, parse_int=float)


def test_generated_metadata_names_split_dataset_seed_and_index_exactly(tmp_path):
    for split, seed in (("val", 0), ("train", 3)):
        out = tmp_path / split
        args = ["generate", "--level", "easy", "--videos", "3", "--frames", "1", "--size", "16", "--out", str(out)]
        assert cli_main([*args, "--split", split, "--seed", str(seed)]) == 0
        texts = [path.read_text() for path in sorted((out / "metadata").iterdir())]
        as_doubles = [_read_as_doubles(text) for text in texts]
        if split == "val":
            assert len({raw["seed"] for raw in as_doubles}) == 1  # the seed alone: all three rounded to 2**62
        assert [(raw["split"], raw["dataset_seed"], raw["video_index"]) for raw in as_doubles] == [
            (split, None if split == "val" else seed, index) for index in range(3)
        ]
        expected = [VAL_SEED_BASE + i if split == "val" else train_video_seed(seed, i) for i in range(3)]
        assert [json.loads(text)["seed"] for text in texts] == expected  # exact for Python readers
        assert [VideoMetadata.from_json(text).seed for text in texts] == expected


def test_seed_parts_follow_the_dataset_seed_scheme_and_round_trip():
    for seed, parts in (
        (train_video_seed(0, 0), ("train", 0, 0)),
        (train_video_seed(2**30 - 1, 2**32 - 1), ("train", 2**30 - 1, 2**32 - 1)),
        (VAL_SEED_BASE - 1, ("train", 2**30 - 1, 2**32 - 1)),
        (VAL_SEED_BASE, ("val", None, 0)),
        (VAL_SEED_BASE + 63, ("val", None, 63)),
    ):
        metadata = generate_video("easy", seed, 1, (8, 8)).metadata
        assert tuple(metadata.seed_parts().values()) == parts
        raw = json.loads(metadata.to_json())
        assert list(raw)[:5] == ["level", "seed", "split", "dataset_seed", "video_index"]
        assert VideoMetadata.from_json(metadata.to_json()) == metadata


def test_fields_a_newer_generator_adds_are_ignored():
    video = generate_video("easy", seed=5, num_frames=2, size=(16, 16))
    raw = json.loads(video.metadata.to_json())
    raw["objects"][0]["material"] = "rubber"
    raw["frames"][1][0]["spin"] = 0.25
    raw["lighting"] = "studio"
    assert VideoMetadata.from_json(json.dumps(raw)) == video.metadata
