"""What the ``stream`` command says about refused frames and the overlay: the first refusal of each error code is
printed with its message, the overlay is claimed only when frames were written to it, and a frame too large for an
MP4 overlay is refused naming the file and the limit instead of failing inside libx264."""

from __future__ import annotations

import re

import av
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video

from service.client.__main__ import main
from service.client.overlay import MAX_SIDE, OverlayWriter, letterboxed


def test_an_mp4_overlay_wider_than_h264_encodes_is_refused_before_the_file_is_made(tmp_path):
    path = tmp_path / "wide.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    width = MAX_SIDE[codec] + 2
    writer = OverlayWriter(path, fps=10.0)
    with pytest.raises(ValueError) as refused:
        writer.write(np.zeros((2, width, 3), np.uint8))
    message = str(refused.value)
    assert message.startswith(f"{path}: frames of {width}x2 pixels are too large for the overlay")
    assert f"at most {MAX_SIDE[codec]} pixels a side" in message and "write a .gif instead" in message
    writer.close()
    assert not path.exists() and writer.frames == 0


def test_the_overlay_counts_the_frames_it_wrote(tmp_path):
    with OverlayWriter(tmp_path / "clip.mp4", fps=10.0) as writer:
        for frame in make_video(seed=3, frames=3):
            writer.write(frame)
    assert writer.frames == 3


def test_the_stream_command_explains_an_overlay_too_wide_for_mp4(server, tmp_path, capsys, monkeypatch):
    """On a machine whose PyAV lacks libx264, the overlay is MPEG-4, which encodes at most 8190 pixels a side: a
    frame the server takes (its sides go to 16384) can still be too wide for it. (libx264's limit is the server's.)"""
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx264"})
    folder, overlay = tmp_path / "panorama", tmp_path / "overlay.mp4"
    folder.mkdir()
    Image.fromarray(np.full((2, 10_000, 3), 90, np.uint8)).save(folder / "0000.png")
    assert main(["stream", str(folder), "--target", server.target, "--out", str(overlay)]) == 2
    error = capsys.readouterr().err
    assert f"error: {overlay}: frames of 10000x2 pixels are too large for the overlay" in error
    assert not overlay.exists()


def test_refusals_are_explained_once_per_code_and_an_unwritten_overlay_is_not_claimed(start_server, tmp_path, capsys):
    """Every frame is 100x20 pixels, within the server's 64x64-pixel limit, but padded to the model's square input
    it is not: three refusals of one code, one message, and no overlay."""
    server = start_server(max_image_pixels=64 * 64)
    folder, overlay = tmp_path / "frames", tmp_path / "overlay.gif"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=84, frames=3, size=(20, 100))):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    flags = ["--target", server.target, "--out", str(overlay), "--frame-fit", "pad"]
    assert main(["stream", str(folder), *flags]) == 1
    error = capsys.readouterr().err
    told = re.findall(r"frame (\d+) refused: (\w+): (.*)", error)
    assert [(index, code) for index, code, _ in told] == [("0", "IMAGE_TOO_LARGE")], error
    assert "padding the 100x20 image" in told[0][2]  # the server's message
    assert "3 frames from 3 images" in error and "0 results, 0 dropped, 3 errors" in error
    assert f"no overlay written to {overlay} (no frame had a result)" in error
    assert "; overlay written to" not in error
    assert not overlay.exists()


def test_a_frame_of_another_shape_than_the_first_is_letterboxed_not_squashed(tmp_path):
    """A folder may mix landscape and portrait images: a portrait frame in a landscape overlay keeps its shape."""
    portrait = np.full((40, 20, 3), 200, np.uint8)  # [H, W, 3]
    boxed = letterboxed(portrait, (20, 60))
    assert boxed.shape == (20, 60, 3)
    columns = np.flatnonzero(boxed.any(axis=(0, 2)))  # the columns the frame covers
    assert (columns[0], columns[-1]) == (25, 34)  # 10 of 60 columns, centred: 40x20 scaled by 1/2
    assert (boxed[:, columns] == 200).all() and (boxed[:, :25] == 0).all() and (boxed[:, 35:] == 0).all()
    path = tmp_path / "mixed.gif"
    with OverlayWriter(path, fps=10.0) as writer:
        writer.write(np.full((20, 60, 3), 90, np.uint8))
        writer.write(portrait)
    with av.open(str(path)) as container:
        second = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)][1]
    assert second.shape == (20, 60, 3)
    assert second[:, 30].mean() > 150 and second[:, 5].max() < 40 and second[:, 55].max() < 40


@pytest.mark.parametrize("flag", ["--out", "--jsonl"])
def test_an_output_naming_the_source_or_another_output_is_refused_before_anything_is_written(tmp_path, capsys, flag):
    """The recording would be replaced while it is read (and the error then blamed the file)."""
    clip = tmp_path / "clip.mp4"
    assert main(["synth", str(clip), "--frames", "3"]) == 0
    before = clip.read_bytes()
    alias = tmp_path / "alias.mp4"
    alias.symlink_to(clip)
    capsys.readouterr()
    for output in (clip, alias):
        assert main(["stream", str(clip), "--target", "127.0.0.1:1", flag, str(output)]) == 2
        assert f"{flag} {output} is the file of the source: it would be replaced" in capsys.readouterr().err
    both = tmp_path / "x.npz"
    assert main(["stream", str(clip), "--target", "127.0.0.1:1", "--jsonl", str(both), "--slots", str(both)]) == 2
    assert f"--slots {both} is the file of --jsonl" in capsys.readouterr().err
    assert clip.read_bytes() == before and not both.exists()
