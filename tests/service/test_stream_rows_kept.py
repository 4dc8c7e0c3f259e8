"""The rows a trajectory keeps when a stream does not go to plan: a source that fails partway keeps the row (and the
JSON line) of every frame sent before the bad one, in ``stream --slots`` as in ``service.extract``; a run whose every
frame was refused still writes K, D and the model version, so its file concatenates with others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from service_helpers import make_video, run, slow_factory

from service.client import Client
from service.client.__main__ import main
from service.engine import ModelCard, load_engine
from service.extract import main as extract_main


def _folder_with_a_truncated_jpeg(folder: Path, good: int) -> None:
    """``good`` JPEG frames, then a JPEG cut in half, then one more good frame."""
    folder.mkdir()
    clip = make_video(seed=71, frames=good + 2)
    for index, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=95)
    bad = folder / f"{good:05d}.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])


def _describe(target: str) -> ModelCard:
    async def describe() -> ModelCard:
        async with Client(target) as client:
            return await client.describe()

    card: ModelCard = run(describe())
    return card


def _assert_no_rows_of(path: Path, slots: int, width: int, version: str) -> None:
    with np.load(path) as saved:
        assert saved["frame_index"].shape == (0,)
        assert saved["slots"].shape == (0, slots, width) and saved["slots"].dtype == np.float32
        assert saved["slot_ids"].shape == saved["areas"].shape == (0, slots)
        assert saved["centroids"].shape == (0, slots, 2) and saved["boxes"].shape == (0, slots, 4)
        assert str(saved["model_version"]) == version != ""


def test_a_source_failing_partway_keeps_the_rows_of_every_frame_sent_before_it(
    start_server, model_dir, tmp_path, capsys
):
    """With the default window, the frames in flight when the source fails are still answered and recorded: the
    stream's files hold as many rows as extract's for the same folder, with the same slots."""
    factory, _ = slow_factory(delay_s=0.05)  # the server answers slowly: the window is full when the source fails
    server = start_server(engine_factory=factory)
    folder, good = tmp_path / "walk", 12
    _folder_with_a_truncated_jpeg(folder, good)
    slots, jsonl = tmp_path / "slots.npz", tmp_path / "results.jsonl"
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots), "--jsonl", str(jsonl)]) == 2
    error = capsys.readouterr().err
    assert f"{good:05d}.jpg" in error and f"slots of {good} frames saved to {slots}" in error
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(good))
    assert all(line["outcome"] == "result" for line in lines)

    out = tmp_path / "extracted"
    assert extract_main([str(folder), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 1
    with np.load(slots) as streamed, np.load(out / "walk.npz") as extracted:
        assert streamed["frame_index"].tolist() == extracted["frame_index"].tolist() == list(range(good))
        np.testing.assert_allclose(streamed["slots"], extracted["slots"], atol=1e-5, rtol=0)


def test_a_stream_whose_every_frame_was_refused_saves_k_d_and_the_model_version(start_server, tmp_path):
    server = start_server(max_image_pixels=480_000)  # the 640 x 640 mask fits; the 700 x 700 frame does not
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.zeros((700, 700, 3), np.uint8)).save(folder / "0000.png")
    slots = tmp_path / "slots.npz"
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots)]) == 1
    card = _describe(server.target)
    _assert_no_rows_of(slots, card.num_slots, card.slot_dim, card.version)


def test_an_extraction_whose_every_frame_was_refused_saves_k_d_and_the_model_version(model_dir, tmp_path, capsys):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.zeros((4097, 4096, 3), np.uint8)).save(folder / "0000.png")  # over 4096 x 4096 pixels
    out = tmp_path / "out"
    assert extract_main([str(folder), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 1
    assert f"{folder}: no frame has a row, every one was refused: frame 0: IMAGE_TOO_LARGE" in capsys.readouterr().err
    card = load_engine("torch", model_dir, name="check", device="cpu", max_batch_size=1).card
    _assert_no_rows_of(out / "big.npz", card.num_slots, card.slot_dim, card.version)
