"""The client library's blocking helper and the ``python -m service.client`` command line."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import ServerThread, make_config, make_video, reference_outputs
from test_stream_service import assert_matches

from plugins.palette import slot_colours
from service.client import FrameResult, StreamError, stream_frames
from service.client.__main__ import main
from service.client.overlay import render_overlay
from service.client.trajectory import TRAJECTORY_ARRAYS
from service.config import DEFAULT_MODEL_DIR
from service.engine import model_version
from service.errors import ErrorCode


def test_blocking_helper_yields_every_result_in_order(server):
    clip = make_video(seed=51, frames=10)
    results = list(stream_frames(server.target, iter(clip), window=3))
    assert [r.frame_index for r in results] == list(range(10))
    assert_matches([r for r in results if isinstance(r, FrameResult)], reference_outputs(server.model_dir, clip))


def test_blocking_helper_raises_server_errors(server):
    with pytest.raises(StreamError) as error:
        list(stream_frames(server.target, iter(make_video(52, 2)), model="missing"))
    assert error.value.code == ErrorCode.UNKNOWN_MODEL


def test_blocking_helper_raises_the_frame_sources_own_error(start_server):
    """An iterable that raises ends the stream with its exception, not with STREAM_EXPIRED after the server's
    idle timeout (kept short here so that the old behaviour fails quickly), and the answers to the frames it had
    already given, in flight when it raised, come first."""
    server = start_server(idle_timeout_s=2.0)
    clip = make_video(54, 3)

    def frames():
        yield from clip
        raise RuntimeError("camera unplugged")

    answers = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for answer in stream_frames(server.target, frames(), window=4):
            answers.append(answer)
    assert [a.frame_index for a in answers] == [0, 1, 2]
    assert_matches(answers, reference_outputs(server.model_dir, clip))


def test_blocking_helper_called_again_and_again_in_one_process_stays_quiet():
    """A script that streams many videos one after another (one ``stream_frames`` call each) gets its answers and
    nothing on stderr: every call runs on the one event loop gRPC's poller is bound to (a fresh loop per call left
    the poller calling into closed loops, with "Event loop is closed" tracebacks)."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from service.client import stream_frames\n"
        "frames = [np.full((24, 32, 3), 40 * i, np.uint8) for i in range(3)]\n"
        "counts = [len(list(stream_frames(sys.argv[1], frames))) for _ in range(100)]\n"
        "print(sum(counts))\n"
    )
    server = ServerThread(make_config(DEFAULT_MODEL_DIR)).start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, server.target], capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        server.stop(0.5)
    assert (done.returncode, done.stdout.strip()) == (0, "300"), done.stderr
    assert done.stderr == ""


def test_blocking_helper_serves_many_threads_whose_frames_wait_on_their_answers(server):
    """Robot code often makes its next frame from the last answer, so each frame waits on its caller. Eight such
    callers in threads at once all finish: the waits of one call never take the threads another call needs."""
    clip = make_video(seed=55, frames=4)

    def feedback_loop(results: list[int]) -> None:
        answered = threading.Event()
        answered.set()

        def frames():
            for frame in clip:
                assert answered.wait(30), "no answer to the previous frame"
                answered.clear()
                yield frame

        for answer in stream_frames(server.target, frames(), window=1):
            results.append(answer.frame_index)
            answered.set()

    results: list[list[int]] = [[] for _ in range(8)]
    threads = [threading.Thread(target=feedback_loop, args=(r,), daemon=True) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [[0, 1, 2, 3]] * 8


def test_blocking_helper_hands_a_system_exit_from_the_frames_to_the_caller_and_keeps_working(server):
    def frames():
        yield make_video(seed=56, frames=1)[0]
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        list(stream_frames(server.target, frames()))
    assert [a.frame_index for a in stream_frames(server.target, iter(make_video(57, 2)))] == [0, 1]


def test_the_readme_python_example_runs(server):
    """The Quickstart's Python example, pointed at a test server, prints one line per frame."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("From Python, with the server", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "stream_frames(" in example
    done = subprocess.run(
        [sys.executable, "-c", example.replace("127.0.0.1:50051", server.target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == [str(index) for index in range(10)]


def test_stream_command_writes_an_overlay_gif_and_json_lines(server, tmp_path):
    gif, jsonl = tmp_path / "overlay.gif", tmp_path / "results.jsonl"
    code = main(["stream", "synthetic:6", "--target", server.target, "--out", str(gif), "--jsonl", str(jsonl)])
    assert code == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(6))
    assert {line["model_version"] for line in lines} == {model_version(server.model_dir)}
    captured = [line["capture_time_ns"] for line in lines]  # a synthetic clip's timeline: 15 frames/s
    assert captured[0] > 0 and all(round((b - a) / 1e6) == 67 for a, b in itertools.pairwise(captured)), captured
    first = lines[0]
    assert first["outcome"] == "result" and first["slot_ids"] == [0, 1, 2, 3]
    assert abs(sum(first["areas"]) - 1) < 1e-3 and first["latency_ms"] > 0
    assert set(first["server_latency_ms"]) == {"decode_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms"}
    with Image.open(gif) as image:
        assert image.n_frames == 6 and image.size == (128, 128)


def test_stream_command_passes_the_staleness_limit_on(server, tmp_path, capsys):
    """A synthetic clip's first frame is stamped with the moment the stream started, so by the time it reaches the
    server it is older than a microsecond: dropped as stale, and its JSON line says so."""
    jsonl = tmp_path / "results.jsonl"
    code = main(
        ["stream", "synthetic:3", "--target", server.target, "--jsonl", str(jsonl), "--max-staleness-s", "1e-6"]
    )
    assert code == 0
    first = json.loads(jsonl.read_text().splitlines()[0])
    assert first["frame_index"] == 0 and first["outcome"] == "dropped" and first["reason"] == "STALE", first
    told = capsys.readouterr().err
    assert told.count("dropped: STALE: the frame was") == 1 and "s old by this server's clock" in told, told


def test_stream_command_reads_video_files_and_folders(server, tmp_path):
    video, folder = tmp_path / "clip.mp4", tmp_path / "frames"
    assert main(["synth", str(video), "--frames", "5", "--size", "64"]) == 0
    folder.mkdir()
    for index, frame in enumerate(make_video(53, 3)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    for source, count in ((video, 5), (folder, 3)):
        out = tmp_path / f"{source.name}.jsonl"
        assert (
            main(["stream", str(source), "--target", server.target, "--jsonl", str(out), "--jpeg-quality", "90"]) == 0
        )
        assert len(out.read_text().splitlines()) == count


def test_stream_command_reports_a_corrupt_frame_by_name(start_server, tmp_path, capsys):
    """A corrupt image in the middle of a folder surfaces as its own error, not as an expired stream."""
    server = start_server(idle_timeout_s=2.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    first, last = make_video(55, 2)
    Image.fromarray(first).save(folder / "0000.png")
    (folder / "0001.png").write_bytes(b"not a png")
    Image.fromarray(last).save(folder / "0002.png")
    assert main(["stream", str(folder), "--target", server.target]) == 2
    error = capsys.readouterr().err
    assert "0001.png" in error and "expired" not in error


def test_stream_command_explains_a_missing_source(server, capsys):
    assert main(["stream", "/no/such/clip.mp4", "--target", server.target]) == 2
    assert "no such file" in capsys.readouterr().err


def test_command_line_mistakes_get_messages_that_name_the_problem(tmp_path, capsys):
    """No server at the target, a file that is no video, a clip name the writer cannot make, a missing folder."""
    import socket

    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{probe.getsockname()[1]}"
    assert main(["describe", "--target", target]) == 1
    assert f"error: cannot reach a server at {target}" in capsys.readouterr().err
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert main(["stream", str(not_video), "--target", target]) == 2
    assert f"{not_video}: cannot read it as a video" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "clip.avi")]) == 2
    assert "the clip must be a .gif or .mp4 file" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "no" / "clip.mp4")]) == 2
    assert f"the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "args", "fragment"),
    [
        ("synthetic:2", ["--fps", "-5"], "argument --fps: must be a number of frames per second from 0.001 to 10000"),
        ("synthetic:2", ["--fps", "0"], "argument --fps: must be a number of frames per second from 0.001 to 10000"),
        ("synthetic:2", ["--fps", "nan"], "argument --fps: must be a number of frames per second from 0.001 to 10000"),
        ("synthetic:2", ["--window", "-2"], "argument --window: must be a whole number >= 1, got '-2'"),
        ("synthetic:2", ["--window", "0"], "argument --window: must be a whole number >= 1, got '0'"),
        ("synthetic:2", ["--max-frames", "0"], "argument --max-frames: must be a whole number >= 1, got '0'"),
        (
            "synthetic:2",
            ["--max-staleness-s", "0"],
            "argument --max-staleness-s: must be a finite number > 0, got '0'",
        ),
        ("synthetic:2", ["--max-staleness-s", "inf"], "--max-staleness-s: must be a finite number > 0, got 'inf'"),
        ("synthetic:0", [], "synthetic:0: after 'synthetic:' comes a frame count (a whole number >= 1), got '0'"),
        ("synthetic:-3", [], "argument source: synthetic:-3: after 'synthetic:' comes a frame count"),
        ("camera:x", [], "argument source: camera:x: after 'camera:' comes a device number (a whole number >= 0)"),
    ],
)
def test_stream_arguments_out_of_range_are_argparse_errors(source, args, fragment, capsys):
    """They used to be accepted silently (a negative rate or window, taken as "no limit" or one frame), or, for
    ``synthetic:0``, to pass a ">= 0" check and fail later with "has no frames"; no server is contacted."""
    with pytest.raises(SystemExit) as exited:
        main(["stream", source, "--target", "127.0.0.1:1", *args])
    error = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and "usage:" in error
    assert fragment in error, error


def test_a_reader_that_goes_away_ends_the_command_quietly(server, monkeypatch, capsys):
    """``describe | head -1``: the pipe closes before the output is written."""

    def closed_pipe(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("builtins.print", closed_pipe)
    assert main(["describe", "--target", server.target]) == 0


@pytest.mark.skipif(importlib.util.find_spec("cv2") is not None, reason="OpenCV is installed here")
def test_a_camera_source_without_opencv_names_the_package_to_install(server, capsys):
    assert main(["stream", "camera:0", "--target", server.target]) == 2
    assert "pip install opencv-python-headless" in capsys.readouterr().err


def test_overlay_colours_are_stable_per_slot_id():
    frame = np.zeros((4, 4, 3), np.uint8)
    segmentation = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    overlay = render_overlay(frame, segmentation, (7, 3), alpha=1.0)
    np.testing.assert_array_equal(overlay[0, 0], slot_colours([7])[0])
    np.testing.assert_array_equal(overlay[0, 3], slot_colours([3])[0])


def _plain_blend(frame, segmentation, slot_ids, alpha):
    """The overlay as a per-pixel formula: blend, darken boundaries, keep pixels outside the view."""
    outside = (segmentation == 255) & (len(slot_ids) <= 255)
    ids = np.asarray(slot_ids)[np.where(outside, 0, segmentation)]
    blended = (1 - alpha) * frame.astype(np.float32) + alpha * slot_colours(ids).astype(np.float32)
    edges = np.zeros(segmentation.shape, bool)
    edges[1:] |= segmentation[1:] != segmentation[:-1]
    edges[:, 1:] |= segmentation[:, 1:] != segmentation[:, :-1]
    blended[edges] *= 0.4
    blended[outside] = frame[outside]
    return blended.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_the_overlay_is_the_plain_per_pixel_blend(alpha):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    segmentation = rng.integers(0, 5, (48, 64)).astype(np.uint8)
    segmentation[:, :6] = 255  # beside a crop
    slot_ids = (4, 11, 2, 30, 7)
    np.testing.assert_array_equal(
        render_overlay(frame, segmentation, slot_ids, alpha), _plain_blend(frame, segmentation, slot_ids, alpha)
    )
    with pytest.raises(ValueError, match="slot index 5, but there are 5 slot ids"):
        render_overlay(frame, np.full((48, 64), 5, np.uint8), slot_ids)


def test_stream_command_saves_the_slot_trajectories(server, tmp_path, capsys):
    """The .npz holds every result's slots, as the engine computes them, in the order of the JSON lines."""
    clip, folder = make_video(seed=55, frames=5), tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")  # lossless: the server sees the raw pixels
    slots, jsonl = tmp_path / "slots.npz", tmp_path / "results.jsonl"
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots), "--jsonl", str(jsonl)]) == 0
    assert f"slots of 5 frames saved to {slots}" in capsys.readouterr().err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with np.load(slots) as saved:
        assert sorted(saved.files) == sorted(TRAJECTORY_ARRAYS)
        assert saved["frame_index"].tolist() == [line["frame_index"] for line in lines] == list(range(5))
        assert saved["slot_ids"].tolist() == [line["slot_ids"] for line in lines]
        np.testing.assert_allclose(saved["areas"], [line["areas"] for line in lines], atol=1e-5)
        reference = np.stack([slot_vectors for slot_vectors, _ in reference_outputs(server.model_dir, clip)])
        assert saved["slots"].dtype == np.float32 and saved["slots"].shape == reference.shape  # [T, K, D]
        np.testing.assert_allclose(saved["slots"], reference, atol=1e-5, rtol=0)
        assert str(saved["model_version"]) and str(saved["frame_fit"]) == "STRETCH"  # the server's default fit

    before = slots.read_bytes()
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots), "--model", "missing"]) == 1
    assert slots.read_bytes() == before  # a refused stream leaves the earlier file in place
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(tmp_path / "slots.txt")]) == 2
    assert "name a .npz file" in capsys.readouterr().err


def test_a_slots_path_that_cannot_be_written_is_refused_before_streaming(tmp_path, capsys):
    """The slots are written when the stream ends: a path found unwritable only then would lose them all."""
    (tmp_path / "taken.npz").mkdir()
    cases = [(tmp_path / "taken.npz", "that is a folder"), (Path("/proc/slots.npz"), "cannot write in /proc")]
    for path, message in cases:
        assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--slots", str(path)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "name"), [("--out", "overlay.gif"), ("--jsonl", "answers.jsonl")])
def test_an_overlay_or_answers_file_that_cannot_be_written_is_refused_before_streaming(tmp_path, capsys, flag, name):
    """Both are opened at the first answer: found unwritable only then, the stream stopped partway and the other
    outputs held a part of it."""
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cases = [
        (Path("/proc") / name, f"{flag} /proc/{name}: cannot write in /proc"),
        (not_a_folder / name, f"{flag} {not_a_folder / name}: {not_a_folder} is a file, not a folder"),
    ]
    for path, message in cases:
        assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", flag, str(path)]) == 2
        assert message in capsys.readouterr().err


def test_an_output_hard_linked_to_the_source_is_refused(tmp_path, capsys):
    """A hard link resolves to its own path: compared by path alone, the recording was replaced by the answers."""
    clip = tmp_path / "clip.mp4"
    assert main(["synth", str(clip), "--frames", "3"]) == 0
    before = clip.read_bytes()
    linked = tmp_path / "answers.jsonl"
    os.link(clip, linked)
    capsys.readouterr()
    assert main(["stream", str(clip), "--target", "127.0.0.1:1", "--jsonl", str(linked)]) == 2
    assert f"--jsonl {linked} is the file of the source: it would be replaced" in capsys.readouterr().err
    assert clip.read_bytes() == before


@pytest.mark.parametrize("flag", ["--jsonl", "--out"])
def test_a_folder_given_for_an_output_file_is_refused_naming_the_flag(tmp_path, capsys, flag):
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", flag, str(tmp_path)]) == 2
    assert f"{flag} {tmp_path}: that is a folder; name a file in it" in capsys.readouterr().err


def test_synth_stopped_by_ctrl_c_keeps_the_frames_written(tmp_path, monkeypatch, capsys):
    from service.client import __main__ as client_cli
    from service.client.synthetic import synthetic_frames

    def three_frames_then_ctrl_c(frames, size):
        yield from synthetic_frames(3, size)
        raise KeyboardInterrupt

    monkeypatch.setattr(client_cli, "synthetic_frames", three_frames_then_ctrl_c)
    out = tmp_path / "clip.gif"
    assert main(["synth", str(out), "--frames", "100", "--size", "16"]) == 130
    assert f"interrupted; {out} holds the first 3 frames" in capsys.readouterr().err
    with Image.open(out) as gif:
        assert gif.n_frames == 3


def test_a_long_synthetic_source_is_made_frame_by_frame():
    """``synthetic:N`` made its whole clip before the first frame was sent (about 5 GB for 100,000 frames)."""
    import tracemalloc

    from service.client.sources import open_source

    tracemalloc.start()
    try:
        source = open_source("synthetic:20000", None, None)
        next(source.frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # one 128 x 128 frame and its workings, not 20,000 frames (about 1 GB)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to stand in for a full disk")
@pytest.mark.parametrize("flag", ["--jsonl", "--out"])
def test_an_output_on_a_full_disk_is_an_error_naming_the_file(server, tmp_path, capsys, flag):
    path = tmp_path / ("results.jsonl" if flag == "--jsonl" else "overlay.mp4")
    path.symlink_to("/dev/full")
    assert main(["stream", "synthetic:3", "--target", server.target, flag, str(path)]) == 2
    assert f"error: No space left on device: {path}" in capsys.readouterr().err


def test_an_output_link_into_a_missing_folder_is_refused_before_streaming(tmp_path, capsys):
    """Outputs are written through their links, so the folder that must exist is the target's."""
    link = tmp_path / "answers.jsonl"
    link.symlink_to(tmp_path / "missing" / "answers.jsonl")
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--jsonl", str(link)]) == 2
    assert f"--jsonl {link}: the folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_an_output_in_a_loop_of_links_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--jsonl", str(tmp_path / "a.jsonl")]) == 2
    assert "a loop of symbolic links" in capsys.readouterr().err
