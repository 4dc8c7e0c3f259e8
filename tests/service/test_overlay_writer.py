"""The overlay writer: GIF and MP4 files written frame by frame, readable by other tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from service.client.overlay import OverlayWriter


def _frames(count: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        frame = np.zeros((size, size, 3), dtype=np.uint8)
        frame[:, : size // 2] = rng.integers(0, 256, 3)
        frame[:, size // 2 :] = rng.integers(0, 256, 3)
        frame[index : index + 8, 4:12] = (0, 255, 0)  # a square moving down
        frames.append(frame)
    return frames


def _quantised(frame: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).quantize(colors=128, dither=Image.Dither.NONE).convert("RGB"))


def test_gif_frames_read_back_as_written_with_their_timing(tmp_path):
    path, frames = tmp_path / "overlay.gif", _frames(6)
    with OverlayWriter(path, fps=10.0) as writer:
        for frame in frames:
            writer.write(frame)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (48, 48) and gif.info["loop"] == 0
        for index, frame in enumerate(frames):
            gif.seek(index)
            assert gif.info["duration"] == 100
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), _quantised(frame))


def test_gif_frames_reach_the_file_as_they_are_written(tmp_path):
    """Frames are not held in memory until close: a long camera run keeps a flat footprint."""
    path = tmp_path / "noise.gif"
    rng = np.random.default_rng(1)
    writer = OverlayWriter(path, fps=15.0)
    for _ in range(48):  # noise hardly compresses: about 21 KB a frame, 1 MB in all, 4x the 256 KB write buffer
        writer.write(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    on_disk_before_close = path.stat().st_size
    writer.close()
    assert on_disk_before_close > 0.5 * path.stat().st_size
    with Image.open(path) as gif:
        assert gif.n_frames == 48


def test_mp4_frames_decode_with_the_frame_size_made_even(tmp_path):
    """H.264 in yuv420p needs even sizes: an odd frame gets its last row and column repeated, none cut off."""
    path = tmp_path / "overlay.mp4"
    with OverlayWriter(path, fps=15.0) as writer:
        for frame in _frames(5, size=47):
            writer.write(frame)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (48, 48, 3)


def test_a_frame_of_another_size_is_fitted_into_the_first_frames_size(tmp_path):
    """A folder of images may mix sizes: the overlay keeps the first frame's, a later frame scaled into it with its
    aspect ratio kept (17x20 into 33x48: 33x39, centred on black bars)."""
    path = tmp_path / "overlay.mp4"
    with OverlayWriter(path, fps=15.0) as writer:
        writer.write(np.zeros((33, 48, 3), dtype=np.uint8))
        writer.write(np.full((17, 20, 3), 255, dtype=np.uint8))
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert [frame.shape for frame in decoded] == [(34, 48, 3)] * 2, "resized to the first frame, then made even"
    assert decoded[0].mean() < 10 and decoded[1][:, 12:36].mean() > 245
    assert decoded[1][:, :2].mean() < 10 and decoded[1][:, -2:].mean() < 10  # the bars


def test_other_suffixes_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must be a \.gif or \.mp4"):
        OverlayWriter(tmp_path / "overlay.avi", fps=15.0)


def test_no_frames_leave_no_file(tmp_path):
    OverlayWriter(tmp_path / "overlay.gif", fps=15.0).close()
    assert not (tmp_path / "overlay.gif").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to stand in for a full disk")
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_full_disk_is_an_error_naming_the_file_and_closing_does_not_crash(tmp_path, suffix):
    """PyAV crashed the process (a segmentation fault) when the writer flushed its encoder into a container whose
    write had failed; run in a child process so that a crash fails the test instead of ending the run."""
    path = tmp_path / f"overlay{suffix}"
    path.symlink_to("/dev/full")  # every write: ENOSPC
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from service.client.overlay import OverlayWriter\n"
        "writer = OverlayWriter(Path(sys.argv[1]), 10)\n"
        "try:\n"
        "    for value in range(100):  # past the encoder's look-ahead\n"
        "        writer.write(np.full((64, 64, 3), value, np.uint8))\n"
        "except OSError as error:\n"
        "    print('write failed:', error)\n"
        "    try:\n"
        "        writer.write(np.zeros((64, 64, 3), np.uint8))\n"
        "    except OSError as again:\n"
        "        print('write failed:', again)\n"
        "try:\n"
        "    writer.close()\n"
        "except OSError as error:\n"
        "    print('close failed:', error)\n"
        "writer.close()  # a second close does nothing\n"
        "print('closed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    *failures, last = done.stdout.splitlines()
    assert failures and "No space left" in failures[0], failures
    assert all(str(path) in failure for failure in failures), failures
    assert last == "closed"


def test_ctrl_c_during_a_write_leaves_a_file_with_every_frame_written_before_it(tmp_path, monkeypatch):
    """An interrupted write is no failed write: closing still flushes the encoder's buffered frames (an MP4
    encoder holds dozens), so the file holds every frame written before the Ctrl-C."""
    path, frames = tmp_path / "overlay.mp4", _frames(50, size=32)
    writer = OverlayWriter(path, fps=10)
    for frame in frames:
        writer.write(frame)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(av.VideoFrame, "from_ndarray", interrupted)
        with pytest.raises(KeyboardInterrupt):
            writer.write(frames[0])
    writer.close()
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(frames)
