"""``python -m service.extract``: trajectory files written without a server equal those of a stream through one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import interrupted_source_opener, make_video

from service.client.__main__ import main as client_main
from service.client.trajectory import TRAJECTORY_ARRAYS
from service.extract import main as extract_main
from service.extract import trajectory_name


def _frames_folder(path: Path, seed: int, frames: int, size: tuple[int, int]) -> Path:
    """A folder of PNG frames of ``size`` ``(H, W)``: not the model's aspect, so the frame fit matters."""
    path.mkdir()
    for index, frame in enumerate(make_video(seed, frames)):
        Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR).save(path / f"{index:04d}.png")
    return path


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_offline_trajectories_equal_those_of_a_stream(server, tmp_path, fit):
    folder = _frames_folder(tmp_path / "walk", seed=91, frames=8, size=(48, 80))
    streamed = tmp_path / "streamed.npz"
    flags = ["--frame-fit", fit, "--fps", "10"]  # a rate: both put the frames on the same timeline
    assert client_main(["stream", str(folder), "--target", server.target, "--slots", str(streamed), *flags]) == 0
    out = tmp_path / "offline"
    assert extract_main([str(folder), "--model", str(server.model_dir), "--out", str(out), "--quiet", *flags]) == 0
    with np.load(streamed) as online, np.load(out / "walk.npz") as offline:
        assert sorted(offline.files) == sorted(TRAJECTORY_ARRAYS)
        for name in ("frame_index", "slot_ids", "frame_size"):
            np.testing.assert_array_equal(offline[name], online[name], err_msg=name)
        for times in (offline["capture_time_ns"], online["capture_time_ns"]):  # from each run's own start
            np.testing.assert_array_equal(times - times[0], [index * 100_000_000 for index in range(8)])
        for name in ("frame_fit", "capture_clock", "model_version", "source"):
            assert str(offline[name]) == str(online[name]), name
        assert str(offline["frame_fit"]) == fit.upper()
        np.testing.assert_allclose(offline["slots"], online["slots"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(offline["areas"], online["areas"], atol=1e-3, rtol=0)  # a near-tie pixel may flip
        np.testing.assert_allclose(offline["centroids"], online["centroids"], atol=0.5, rtol=0, equal_nan=True)


def test_synthetic_clips_keep_their_timeline_and_name(server, tmp_path):
    out = tmp_path / "offline"
    assert extract_main(["synthetic:5", "--model", str(server.model_dir), "--out", str(out), "--quiet"]) == 0
    with np.load(out / "synthetic_5.npz") as trajectory:
        assert trajectory["slots"].shape == (5, 4, 16)
        assert str(trajectory["capture_clock"]) == "frame_rate" and float(trajectory["fps"]) == 15.0
        times = trajectory["capture_time_ns"] - trajectory["capture_time_ns"][0]
        np.testing.assert_array_equal(times, [round(index * 1e9 / 15) for index in range(5)])
        assert str(trajectory["source"]) == "synthetic:5" and str(trajectory["frame_fit"]) == "STRETCH"


def test_the_device_is_read_in_any_case_as_the_server_reads_it(server, tmp_path):
    out = tmp_path / "offline"
    flags = ["--model", str(server.model_dir), "--out", str(out), "--quiet", "--device", " CPU"]
    assert extract_main(["synthetic:2", *flags]) == 0
    assert (out / "synthetic_2.npz").is_file()


def test_files_are_not_replaced_or_shared_unless_asked(server, tmp_path, capsys):
    model = ["--model", str(server.model_dir), "--quiet"]
    first, second = tmp_path / "a" / "clip", tmp_path / "b" / "clip"
    first.parent.mkdir(), second.parent.mkdir()
    _frames_folder(first, seed=92, frames=2, size=(64, 64))
    _frames_folder(second, seed=93, frames=2, size=(64, 64))
    out = tmp_path / "out"
    assert extract_main([str(first), str(second), "--out", str(out), *model]) == 2
    assert "would both be written to" in capsys.readouterr().err and not out.exists()
    assert extract_main([str(first), "--out", str(out), *model]) == 0
    assert extract_main([str(first), "--out", str(out), *model]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert extract_main([str(first), "--out", str(out), "--overwrite", *model]) == 0


def test_a_failing_source_is_reported_and_the_others_are_written(server, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code = extract_main([str(empty), "synthetic:3", "--out", str(out), "--model", str(server.model_dir), "--quiet"])
    assert code == 1
    assert f"slotstream extract: {empty} holds no images" in capsys.readouterr().err
    assert (out / "synthetic_3.npz").exists() and not (out / "empty.npz").exists()
    assert extract_main(["camera:0", "--out", str(out), "--model", str(server.model_dir)]) == 2
    assert "camera:0: extract reads recorded sources" in capsys.readouterr().err
    nothing = tmp_path / "nothing"
    assert extract_main([str(empty), "--out", str(nothing), "--model", str(server.model_dir), "--quiet"]) == 1
    assert not nothing.exists(), "no folder is made when no source opens"


def test_a_frame_the_server_would_refuse_gets_no_row_and_the_rest_go_on(server, tmp_path, capsys):
    """As in a stream: the refused frame is answered (here: reported) and leaves the state as it was."""
    folder = _frames_folder(tmp_path / "walk", seed=94, frames=3, size=(64, 64))
    Image.fromarray(np.zeros((1, 16_000, 3), np.uint8)).save(folder / "0001a.png")  # padded: a 16000^2 canvas
    out = tmp_path / "out"
    flags = ["--model", str(server.model_dir), "--out", str(out), "--quiet", "--frame-fit", "pad"]
    assert extract_main([str(folder), *flags]) == 0
    err = capsys.readouterr().err
    assert "frame 2 has no row: IMAGE_TOO_LARGE: padding the 16000x1 image" in err
    assert "(service.extract applies a server's defaults)" in err
    with np.load(out / "walk.npz") as trajectory:
        np.testing.assert_array_equal(trajectory["frame_index"], [0, 1, 3])


def test_trajectory_names(tmp_path, monkeypatch):
    assert trajectory_name("clips/a.mp4") == "a"
    assert trajectory_name("synthetic:60") == "synthetic_60"
    assert trajectory_name("synthetic:") == "synthetic_60"
    (tmp_path / "run3").mkdir()
    (tmp_path / "clip.v2").mkdir()
    assert trajectory_name(f"{tmp_path}/run3/") == "run3"
    assert trajectory_name(str(tmp_path / "clip.v2")) == "clip.v2", "a folder keeps its whole name"
    monkeypatch.chdir(tmp_path / "run3")
    assert trajectory_name(".") == "run3"


def test_ctrl_c_keeps_the_rows_extracted_so_far_and_exits_130(server, tmp_path, monkeypatch, capsys):
    """A source stopped by Ctrl-C (here its frames raise KeyboardInterrupt after three) keeps its rows on disk,
    as the client keeps a stream's, instead of ending with a traceback and no file."""
    from service import extract as extract_module

    monkeypatch.setattr(extract_module, "open_source", interrupted_source_opener(3))
    out = tmp_path / "out"
    assert extract_main(["synthetic:10", "--model", str(server.model_dir), "--out", str(out), "--quiet"]) == 130
    saved = out / f"{trajectory_name('synthetic:10')}.npz"
    assert f"interrupted; slots of 3 frames saved to {saved}" in capsys.readouterr().err
    with np.load(saved) as trajectory:
        assert trajectory["frame_index"].tolist() == [0, 1, 2]


def test_a_frame_rate_that_is_not_positive_is_a_usage_error(tmp_path, capsys):
    assert extract_main(["synthetic:3", "--fps", "-1", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.count("--fps must be a number of frames per second from 0.001 to 10000") == 1


def test_an_out_that_cannot_be_written_is_refused_before_any_source_is_read(tmp_path, capsys, monkeypatch):
    """Each file is written when its source ends: found unwritable only then, hours of video were read for
    nothing."""
    import service.extract as extract_module

    def no_engine(*args, **kwargs):
        pytest.fail("the model was loaded for an --out that cannot be written")

    monkeypatch.setattr(extract_module, "load_engine", no_engine)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (Path("/proc/trajectories"), "--out /proc/trajectories: cannot write in /proc"),
        (a_file / "out", f"--out {a_file / 'out'}: {a_file} is a file, not a folder"),
    ]
    for out, message in cases:
        assert extract_main(["synthetic:2", "--out", str(out), "--quiet"]) == 2
        assert message in capsys.readouterr().err
