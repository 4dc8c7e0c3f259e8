"""Why a trajectory's frames have no row: the ``missing_*`` arrays list every frame sent without a result (dropped
by live mode, refused by the server, or never answered), once each and in frame order, in ``stream --slots`` and
``service.extract`` files; :func:`trajectory_missing` reads them, and gives files written before them their gaps."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run, slow_factory
from tcp_proxy import TcpProxy

from service.client import Client
from service.client.__main__ import main as client_main
from service.client.answer_outputs import record_answer
from service.client.trajectory import (
    TRAJECTORY_ARRAYS,
    UNANSWERED,
    frame_dropped,
    frame_refused,
    trajectory_end,
    trajectory_missing,
)
from service.client.trajectory_writer import SlotTrajectory
from service.errors import ErrorCode
from service.extract import main as extract_main
from service.types import DropReason, EncodedImage, FrameResult, ImageEncoding, LatencyBreakdown, Output, StreamOptions

CORRUPT_JPEG = EncodedImage(ImageEncoding.JPEG, b"\xff\xd8 not a jpeg")


def _result(index: int) -> FrameResult:
    return FrameResult(
        stream_id="s",
        frame_index=index,
        capture_time_ns=index,
        camera_frame_id="",
        received_time_ns=0,
        completed_time_ns=0,
        model_version="v1",
        slot_ids=(0, 1),
        latency=LatencyBreakdown(batch_size=1),
        slots=np.full((2, 3), index, np.float32),
    )


def _missing(path: Path) -> list[tuple[int, int, str]]:
    """``(frame index, source frame, reason)`` of each frame of the file without a row, read with numpy."""
    with np.load(path) as saved:
        assert saved["missing_frame_index"].dtype == saved["missing_source_frame"].dtype == np.int64
        assert saved["missing_reason"].dtype.kind == "U", "strings that load without pickle"
        return list(
            zip(
                saved["missing_frame_index"].tolist(),
                saved["missing_source_frame"].tolist(),
                saved["missing_reason"].tolist(),
                strict=True,
            )
        )


def _rows(path: Path) -> list[int]:
    with np.load(path) as saved:
        return [int(index) for index in saved["frame_index"]]


def _numbered_folder(
    folder: Path, numbers: list[int], seed: int, big: tuple[int, ...] = (), big_size: tuple[int, int] = (700, 700)
) -> Path:
    """PNG frames named by ``numbers`` (``00007.png``); those numbered in ``big`` are black, of ``big_size``."""
    folder.mkdir()
    for number, frame in zip(numbers, make_video(seed=seed, frames=len(numbers)), strict=True):
        image = np.zeros((*big_size, 3), np.uint8) if number in big else frame
        Image.fromarray(image).save(folder / f"{number:05d}.png")
    return folder


def test_each_frame_is_recorded_once_in_frame_order_and_a_row_wins(tmp_path):
    trajectory = SlotTrajectory(tmp_path / "t.npz")
    trajectory.source_frames.update({5: 50, 3: 30, 4: 40})
    trajectory.add_missing(5, frame_dropped(DropReason.SUPERSEDED))
    trajectory.add_missing(3, frame_refused(ErrorCode.UNDECODABLE_IMAGE))
    trajectory.add_missing(3, UNANSWERED)  # a later record of the same frame: the first stands
    trajectory.add_missing(4, UNANSWERED)
    trajectory.add(_result(4), np.zeros(2))  # a result for a frame recorded as missing: its row replaces the entry
    trajectory.add(_result(1), np.zeros(2))
    trajectory.add_missing(1, frame_refused(ErrorCode.FRAME_INDEX_NOT_INCREASING))  # a row is never also missing
    trajectory.add(_result(1), np.ones(2))  # nor recorded twice
    trajectory.save()
    assert _rows(trajectory.path) == [4, 1]
    assert _missing(trajectory.path) == [(3, 30, "refused: UNDECODABLE_IMAGE"), (5, 50, "dropped: SUPERSEDED")]
    assert trajectory.source_frames == {}, "each record took its source frame"
    with np.load(trajectory.path) as saved:
        assert saved["slots"].shape == (2, 2, 3) and saved["areas"].tolist() == [[0, 0], [0, 0]]


def test_a_file_with_every_frame_answered_has_empty_missing_arrays(tmp_path):
    path = tmp_path / "t.npz"
    trajectory = SlotTrajectory(path)
    trajectory.add(_result(0), np.zeros(2))
    trajectory.save()
    with np.load(path) as saved:
        assert sorted(saved.files) == sorted(TRAJECTORY_ARRAYS)
        for name in ("missing_frame_index", "missing_source_frame", "missing_reason"):
            assert saved[name].shape == (0,), name
        missing = trajectory_missing(saved)
    assert missing.frame_index.shape == missing.source_frame.shape == missing.reason.shape == (0,)


def test_a_file_written_before_missing_frames_were_recorded_gives_its_gaps_as_not_known(tmp_path):
    path = tmp_path / "new.npz"
    trajectory = SlotTrajectory(path)
    for index in (1, 2, 5):
        trajectory.add(_result(index), np.zeros(2))
    trajectory.add_missing(0, frame_dropped(DropReason.SUPERSEDED))
    trajectory.save()
    old = tmp_path / "old.npz"
    with np.load(path) as saved:
        new = trajectory_missing(saved)
        # the format before the missing frames, source_frame and the end were recorded
        later = {"source_frame", "end_reason", "complete", "missing_frame_index", "missing_source_frame"}
        np.savez(old, **{name: saved[name] for name in saved.files if name not in later | {"missing_reason"}})
    assert new.frame_index.tolist() == [0] and new.reason.tolist() == ["dropped: SUPERSEDED"]
    with np.load(old) as saved:
        assert trajectory_end(saved) == (None, "")
        frame_index, source_frame, reason = trajectory_missing(saved)
    assert frame_index.tolist() == [0, 3, 4] and frame_index.dtype == np.int64
    assert source_frame.tolist() == [-1, -1, -1] and reason.tolist() == ["", "", ""]
    empty = trajectory_missing({"frame_index": np.zeros(0, np.int64)})
    assert empty.frame_index.shape == empty.source_frame.shape == empty.reason.shape == (0,)


def test_a_live_stream_records_the_frames_it_dropped_with_their_source_frames(start_server, tmp_path, capsys):
    """Frames sent faster than the model: live mode drops the stale ones. Every frame has a row or a missing entry
    (``dropped: SUPERSEDED``) with its source frame (a numbered folder with a gap), as the JSON lines say."""
    factory, _ = slow_factory(delay_s=0.03)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    numbers = [number for number in range(25) if number != 3]
    folder = _numbered_folder(tmp_path / "walk", numbers, seed=81)
    slots, jsonl = tmp_path / "slots.npz", tmp_path / "results.jsonl"
    command = [
        "stream",
        str(folder),
        "--target",
        server.target,
        "--live",
        "--slots",
        str(slots),
        "--jsonl",
        str(jsonl),
    ]
    assert client_main(command) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    dropped = sorted(line["frame_index"] for line in lines if line["outcome"] == "dropped")
    assert dropped, "the server dropped no frame: the test did not send faster than the model"
    missing = _missing(slots)
    assert missing == [(index, numbers[index], "dropped: SUPERSEDED") for index in dropped]
    rows = _rows(slots)
    assert sorted(rows + dropped) == list(range(len(numbers))) and not set(rows) & set(dropped)
    with np.load(slots) as saved:
        assert saved["source_frame"].tolist() == [numbers[index] for index in rows]
        assert trajectory_end(saved) == (True, "end")


def test_frames_the_server_refuses_are_recorded_also_after_the_last_row(start_server, tmp_path, capsys):
    """Frames over the server's pixel limit, one of them the source's last: each is ``refused: IMAGE_TOO_LARGE``
    with its source frame, the last one too (its answer comes after the last row)."""
    server = start_server(max_image_pixels=480_000)  # the 30 x 40 frames fit; the 700 x 700 ones do not
    numbers = [0, 1, 2, 4, 5, 6]
    folder = _numbered_folder(tmp_path / "walk", numbers, seed=82, big=(2, 6))
    slots = tmp_path / "slots.npz"
    assert client_main(["stream", str(folder), "--target", server.target, "--slots", str(slots)]) == 1
    assert "frame 2 refused: IMAGE_TOO_LARGE" in capsys.readouterr().err
    assert _rows(slots) == [0, 1, 3, 4]
    assert _missing(slots) == [(2, 2, "refused: IMAGE_TOO_LARGE"), (5, 6, "refused: IMAGE_TOO_LARGE")]


def test_extract_records_the_frames_it_refuses_with_their_source_frames(model_dir, tmp_path, capsys):
    """``service.extract`` refuses what a server would (over its default 4096 x 4096 pixels), the last frame too."""
    folder = _numbered_folder(tmp_path / "walk", [0, 1, 4, 5], seed=86, big=(4, 5), big_size=(4097, 4096))
    out = tmp_path / "out"
    assert extract_main([str(folder), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    assert "frame 3 has no row: IMAGE_TOO_LARGE" in capsys.readouterr().err
    assert _rows(out / "walk.npz") == [0, 1]
    assert _missing(out / "walk.npz") == [(2, 4, "refused: IMAGE_TOO_LARGE"), (3, 5, "refused: IMAGE_TOO_LARGE")]


def test_a_corrupt_frame_the_server_cannot_decode_is_recorded_as_refused(server, tmp_path):
    """Answers of a real server recorded as the ``stream`` command records them (:func:`record_answer`): the
    corrupt JPEGs, the last frame one of them, are ``refused: UNDECODABLE_IMAGE``."""
    clip = make_video(seed=83, frames=5)
    frames: list[np.ndarray | EncodedImage] = [clip[0], clip[1], CORRUPT_JPEG, clip[3], CORRUPT_JPEG]
    trajectory = SlotTrajectory(tmp_path / "slots.npz")
    summary = {"frames": 0, "results": 0, "dropped": 0, "errors": 0}

    async def scenario() -> None:
        async with Client(server.target) as client:
            stream = await client.open(
                StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}), mask_size=(30, 40))
            )
            for index, frame in enumerate(frames):
                trajectory.source_frames[index] = 100 + index
                await stream.send(frame)
            for _ in frames:
                answer = await stream.receive()
                record_answer(answer, clip[answer.frame_index], 0.0, summary, None, None, trajectory)
            await stream.close()

    run(scenario())
    trajectory.save()
    assert summary["errors"] == 2 and summary["results"] == 3
    assert _rows(trajectory.path) == [0, 1, 3]
    assert _missing(trajectory.path) == [
        (2, 102, "refused: UNDECODABLE_IMAGE"),
        (4, 104, "refused: UNDECODABLE_IMAGE"),
    ]


def test_frames_sent_when_the_connection_was_lost_are_recorded_as_unanswered(start_server, tmp_path, capsys):
    """The connection is cut while frames are in flight, and the run stops: the frames sent and never answered are
    ``unanswered``, so rows and missing entries together are every frame sent, as the error counts them."""
    factory, _ = slow_factory(delay_s=0.03)
    server = start_server(engine_factory=factory)
    proxy = TcpProxy(server.target)
    try:
        folder = _numbered_folder(tmp_path / "walk", list(range(40)), seed=84)
        slots = tmp_path / "slots.npz"
        cut = _after_rows(server, 5, proxy.drop)
        code = client_main(["stream", str(folder), "--target", proxy.target, "--window", "6", "--slots", str(slots)])
        cut.join(30)
    finally:
        proxy.close()
    error = capsys.readouterr().err
    assert code == 1 and "was lost after " in error, error
    answered, sent = (int(count) for count in error.split("was lost after ")[1].split(" frames")[0].split(" of "))
    missing = _missing(slots)
    assert sent > answered, "no frame was in flight when the connection was cut"
    assert [index for index, _, _ in missing] == list(range(answered, sent))
    assert all(reason == UNANSWERED for _, _, reason in missing)
    assert [source for _, source, _ in missing] == list(range(answered, sent))
    assert _rows(slots) == list(range(answered))
    with np.load(slots) as saved:
        assert trajectory_end(saved)[0] is False


def test_a_stream_continued_after_a_lost_connection_records_each_frame_once(start_server, tmp_path, capsys):
    """A live stream whose connection is cut and continued (``--reconnect``): every frame has a row or a missing
    entry, never both and never two."""
    factory, _ = slow_factory(delay_s=0.03)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    proxy = TcpProxy(server.target)
    try:
        folder = _numbered_folder(tmp_path / "walk", list(range(30)), seed=85)
        slots = tmp_path / "slots.npz"
        cut = _after_rows(server, 8, proxy.drop)
        command = [
            "stream",
            str(folder),
            "--target",
            proxy.target,
            "--live",
            "--reconnect",
            "3",
            "--slots",
            str(slots),
        ]
        code = client_main(command)
        cut.join(30)
    finally:
        proxy.close()
    error = capsys.readouterr().err
    assert code == 0 and "continued the stream" in error, error
    rows, missing = _rows(slots), [index for index, _, _ in _missing(slots)]
    assert len(set(rows)) == len(rows) and sorted(rows + missing) == list(range(30))
    assert all(reason in ("dropped: SUPERSEDED", UNANSWERED) for _, _, reason in _missing(slots))


def _after_rows(server, index: int, action) -> threading.Thread:
    """Run ``action`` in a thread once a stream of ``server`` has processed frame ``index``."""
    manager = server.server.manager

    def latest() -> int:
        return int(
            server.on_loop(lambda: max((s.last_frame_index or -1 for s in manager.sessions.values()), default=-1))
        )

    def watch() -> None:
        deadline = time.monotonic() + 60
        while latest() < index and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=watch, name="test-cutter", daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("capture_time_ns", [2**63, -(2**63) - 1, 10**30])
def test_a_capture_time_beyond_int64_is_refused_and_the_rows_before_it_are_saved(tmp_path, capture_time_ns):
    """Refused when its row is added, so the rows before it are still saved, instead of an ``OverflowError`` that
    failed the whole file when it was written."""
    path = tmp_path / "t.npz"
    trajectory = SlotTrajectory(path)
    trajectory.add(dataclasses.replace(_result(0), capture_time_ns=2**63 - 1), np.full(2, 0.5))  # the largest fits
    with pytest.raises(ValueError, match=f"frame 1: its capture time, {capture_time_ns} ns, is beyond the int64"):
        trajectory.add(dataclasses.replace(_result(1), capture_time_ns=capture_time_ns), np.full(2, 0.5))
    assert len(trajectory) == 1
    trajectory.save()
    with np.load(path) as saved:
        assert saved["frame_index"].tolist() == [0] and saved["capture_time_ns"].tolist() == [2**63 - 1]
