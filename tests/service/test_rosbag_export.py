"""A slot trajectory written as a ROS 2 bag: one ``slotstream_msgs/msg/SlotArray`` per row, stamped with the row's
capture time, read back with rosbags from the bag's own message definitions (nothing built), equal to the file."""

from __future__ import annotations

import re
import struct
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from service_helpers import make_video

from service.client import bag_rows
from service.client.__main__ import main
from service.client.rosbag import MSG_PACKAGE, message_types

pytest.importorskip("rosbags", reason="the 'ros' extra (rosbags) writes and reads the bags")
from rosbags.highlevel import AnyReader


def _read_bag(bag: Path) -> tuple[list[tuple[int, object]], object]:
    """``[(log time ns, message)]`` of the bag's one topic, decoded with the definitions it carries, and its
    connection."""
    with AnyReader([bag]) as reader:
        (connection,) = reader.connections
        messages = [(stamp, reader.deserialize(raw, connection.msgtype)) for _, stamp, raw in reader.messages()]
    return messages, connection


@pytest.fixture
def trajectory(start_server, tmp_path) -> Path:
    """The slots file of a 5-frame stream of 40x56 frames whose third frame, 700x700, the server refuses as too
    large."""
    server = start_server(max_image_pixels=480_000)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=12, frames=5, size=(40, 56))):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    Image.fromarray(make_video(seed=13, frames=1, size=(700, 700))[0]).save(folder / "0002.png")
    slots = tmp_path / "slots.npz"
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(slots), "--fps", "10"]) == 1
    return slots


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_each_row_is_one_stamped_message_equal_to_the_file(trajectory, tmp_path, capsys, storage):
    bag = tmp_path / "bag"
    args = ["to-rosbag", str(trajectory), str(bag), "--topic", "/front/slots", "--frame-id", "front_camera"]
    assert main([*args, "--storage", storage]) == 0
    err = capsys.readouterr().err
    assert "wrote 4 messages on /front/slots" in err and "1 frames had no result, so no message" in err
    messages, connection = _read_bag(bag)
    assert connection.topic == "/front/slots" and connection.msgtype == "slotstream_msgs/msg/SlotArray"
    with np.load(trajectory) as saved:
        assert len(messages) == len(saved["frame_index"]) == 4
        for row, (log_time, message) in enumerate(messages):
            stamp = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
            assert stamp == log_time == saved["capture_time_ns"][row] > 0
            assert message.header.frame_id == "front_camera"
            assert (
                message.frame_index == saved["frame_index"][row] and message.source_frame == saved["source_frame"][row]
            )
            assert (message.frame_height, message.frame_width) == (40, 56)
            assert message.model_version == str(saved["model_version"])
            assert [slot.id for slot in message.slots] == saved["slot_ids"][row].tolist()
            np.testing.assert_array_equal(np.stack([slot.vector for slot in message.slots]), saved["slots"][row])
            geometry = np.array(
                [[s.area, s.centroid_row, s.centroid_col, s.top, s.left, s.bottom, s.right] for s in message.slots]
            )  # [K, 7]
            expected = np.concatenate(
                [saved["areas"][row][:, None], saved["centroids"][row], saved["boxes"][row]], axis=1
            )  # [K, 7]
            np.testing.assert_array_equal(geometry.astype(np.float32), expected)  # NaN where a slot has no pixel
        assert saved["frame_index"].tolist() == [0, 1, 3, 4]  # the refused frame has no row, so no message
        run = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
        assert run == {
            "slotstream.source": str(saved["source"]),
            "slotstream.capture_clock": "frame_rate",
            "slotstream.fps": "10.0",
            "slotstream.model_version": str(saved["model_version"]),
            "slotstream.frame_fit": "STRETCH",
            "slotstream.end_reason": "end",
            "slotstream.complete": "true",
        }


def test_the_message_package_builds_the_messages_the_bags_carry():
    """The interface package a ROS 2 workspace builds lists every message file, and rosbags parses each."""
    files = sorted(path.name for path in (MSG_PACKAGE / "msg").glob("*.msg"))
    listed = re.findall(r'"msg/(\w+\.msg)"', (MSG_PACKAGE / "CMakeLists.txt").read_text())
    assert files == sorted(listed) == ["Slot.msg", "SlotArray.msg"]
    assert "<name>slotstream_msgs</name>" in (MSG_PACKAGE / "package.xml").read_text()
    assert set(message_types()) == {"slotstream_msgs/msg/Slot", "slotstream_msgs/msg/SlotArray"}


def test_the_distribution_ships_every_file_of_the_message_package():
    """``pip install`` copies package data only where pyproject.toml lists it: the rosbag module reads the message
    files at run time, and a ROS 2 workspace builds the package from them."""
    client = MSG_PACKAGE.parents[1]  # service/client
    patterns = tomllib.loads((client.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {path for pattern in patterns["package-data"]["service.client"] for path in client.glob(pattern)}
    assert shipped == {path for path in MSG_PACKAGE.rglob("*") if path.is_file()}


def test_what_cannot_be_written_is_named_and_nothing_is_written(trajectory, tmp_path, capsys):
    bag = tmp_path / "bag"

    def refused(*args: str, path: Path = trajectory) -> str:
        assert main(["to-rosbag", str(path), str(bag), *args]) == 2
        assert not bag.exists()
        return capsys.readouterr().err

    assert "a ROS 2 topic name starts with '/'" in refused("--topic", "slots")
    assert "'/front/2d'" in refused("--topic", "/front/2d")
    for frame_id in ("", "/camera", "front camera"):
        assert f"frame id {frame_id!r}: name the camera's tf2 frame" in refused("--frame-id", frame_id)
    with np.load(trajectory) as saved:
        arrays = dict(saved)
    unstamped = tmp_path / "unstamped.npz"
    np.savez(unstamped, **{**arrays, "capture_time_ns": np.zeros_like(arrays["capture_time_ns"])})
    assert "4 of the trajectory's 4 rows (frame_index 0 first) have no capture time" in refused(path=unstamped)
    short = tmp_path / "short.npz"
    np.savez(short, **{name: value for name, value in arrays.items() if name != "boxes"})
    assert "the trajectory lacks boxes" in refused(path=short)
    late = tmp_path / "late.npz"  # the last row at the first time an int32 of seconds cannot hold
    at_the_limit = arrays["capture_time_ns"] - arrays["capture_time_ns"][-1] + bag_rows.LAST_STAMP_NS
    np.savez(late, **{**arrays, "capture_time_ns": at_the_limit})
    assert "1 of the trajectory's 4 rows (frame_index 4 first) have capture times from 2038" in refused(path=late)
    negative = tmp_path / "negative.npz"
    np.savez(negative, **{**arrays, "slot_ids": arrays["slot_ids"] - 1})
    assert "slot_ids run from -1 to 2, beyond the uint32 ids" in refused(path=negative)
    bent = tmp_path / "bent.npz"
    np.savez(bent, **{**arrays, "areas": arrays["areas"][:, :2]})
    assert "areas has shape (4, 2), not [4, 4]" in refused(path=bent)
    text = tmp_path / "notes.npz"
    text.write_text("not an archive\n")
    assert f"{text}: not a trajectory file (.npz)" in refused(path=text)
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3))
    assert "holds one array (.npy), not a trajectory file" in refused(path=single)
    assert main(["to-rosbag", str(trajectory), str(trajectory / "bag")]) == 2  # a file as the bag's parent
    assert f"{trajectory} is not a folder, so the bag's folder cannot be made in it" in capsys.readouterr().err
    bag.mkdir()
    assert main(["to-rosbag", str(trajectory), str(bag)]) == 2
    err = capsys.readouterr().err
    assert f"error: {bag} exists: a bag is written to a new folder" in err  # the output's problem, not the input's


def _damage(path: Path, member: str) -> None:
    """Flip a byte in the middle of ``member``'s stored bytes in the zip file ``path``, as a bad copy would."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length  # the member's data, after its local header
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_a_damaged_file_is_named_with_the_array_that_cannot_be_read(trajectory, tmp_path, capsys, save):
    """A bad copy fails only when its array is read (a checksum, a broken deflate stream): the error names the file
    and the array, and no bag is written."""
    with np.load(trajectory) as saved:
        arrays = dict(saved)
    damaged, bag = tmp_path / "damaged.npz", tmp_path / "bag"
    save(damaged, **arrays)
    _damage(damaged, "slots.npy")
    assert main(["to-rosbag", str(damaged), str(bag)]) == 2
    err = capsys.readouterr().err
    assert f"error: {damaged}: its array 'slots' cannot be read (the file is damaged): " in err, err
    assert not bag.exists()


def test_without_the_ros_extra_the_command_names_it(trajectory, tmp_path, capsys, monkeypatch):
    for name in [name for name in sys.modules if name == "rosbags" or name.startswith("rosbags.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rosbags", None)  # as if not installed
    with pytest.raises(SystemExit) as stopped:
        main(["to-rosbag", str(trajectory), str(tmp_path / "bag")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "needs the 'ros' extra (its module 'rosbags' is not installed): pip install 'slotstream[ros]'" in err
    assert not (tmp_path / "bag").exists()


def test_a_failure_while_writing_leaves_no_bag_behind(trajectory, tmp_path, monkeypatch, capsys):
    """The bag is written in a hidden folder and moved into place: a run that fails partway (here the second
    message) leaves neither the bag's folder nor the hidden one, so the same command can run again."""
    original = bag_rows.TrajectoryRows.messages

    def failing(self, typestore, frame_id):
        for index, item in enumerate(original(self, typestore, frame_id)):
            if index == 1:
                raise OSError("no space left on device")
            yield item

    monkeypatch.setattr(bag_rows.TrajectoryRows, "messages", failing)
    assert main(["to-rosbag", str(trajectory), str(tmp_path / "out" / "bag")]) == 2
    assert "error: no space left on device" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    assert main(["to-rosbag", str(trajectory), str(tmp_path / "out" / "bag")]) == 0
    assert sorted(path.name for path in (tmp_path / "out" / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]


def test_a_file_written_before_the_missing_frames_were_recorded_counts_its_gaps(trajectory, tmp_path, capsys):
    with np.load(trajectory) as saved:
        arrays = {name: value for name, value in saved.items() if not name.startswith("missing_")}
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    assert main(["to-rosbag", str(old), str(tmp_path / "bag")]) == 0
    err = capsys.readouterr().err
    assert "wrote 4 messages on /slotstream/slots" in err and "; 1 frames had no result, so no message" in err


def test_a_trajectory_of_a_run_that_stopped_early_is_written_with_a_warning(trajectory, tmp_path, capsys):
    with np.load(trajectory) as saved:
        arrays = {**saved, "complete": np.array(False), "end_reason": np.array("interrupted")}
    stopped = tmp_path / "stopped.npz"
    np.savez(stopped, **arrays)
    assert main(["to-rosbag", str(stopped), str(tmp_path / "bag")]) == 0
    err = capsys.readouterr().err
    assert f"warning: the run that made {stopped} did not go through its source (interrupted)" in err
    run = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert run["custom_data"]["slotstream.complete"] == "false"


def test_a_trajectory_that_does_not_say_how_its_run_ended_is_written_without_a_warning(trajectory, tmp_path, capsys):
    with np.load(trajectory) as saved:
        arrays = {**saved, "complete": np.array(False), "end_reason": np.array("")}  # as SlotTrajectory saves it
    unknown = tmp_path / "unknown.npz"
    np.savez(unknown, **arrays)
    assert main(["to-rosbag", str(unknown), str(tmp_path / "bag")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_any_damaged_byte_gives_a_bag_or_an_error_naming_the_file_never_a_traceback(trajectory, tmp_path, capsys):
    """One byte flipped at a time, every 11th of the file (array data, member headers, the zip's index at its end):
    each damaged copy either makes a bag (the byte was in data no check covers) or is refused with exit status 2,
    naming the file."""
    original = trajectory.read_bytes()
    damaged = tmp_path / "damaged.npz"
    outcomes = {0: 0, 2: 0}
    for position in range(0, len(original), 11):
        data = bytearray(original)
        data[position] ^= 0xFF
        damaged.write_bytes(bytes(data))
        bag = tmp_path / f"bag-{position}"
        code = main(["to-rosbag", str(damaged), str(bag)])
        err = capsys.readouterr().err
        assert code in outcomes, (position, err)
        assert code == 0 or f"error: {damaged}" in err, (position, err)
        outcomes[code] += 1
    assert outcomes[2] > 0 and outcomes[0] > 0, outcomes
