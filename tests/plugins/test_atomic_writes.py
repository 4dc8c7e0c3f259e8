"""``plugins.files.write_atomically`` writes through a hidden temporary twin of the file, whose name repeats the
file's: for a name near the file system's 255-byte limit the twin's name was longer than the limit, and a long run
(an hour of slots, a whole video's extraction) failed at its very end, after all the work."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.files import TEMPORARY_NAME_BYTES, temporary_prefix, write_atomically


@pytest.mark.parametrize("name", ["a" * 251 + ".npz", "a" + "é" * 125 + ".npz", "short.json"])
def test_a_file_whose_name_the_file_system_takes_is_written(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    assert len(name.encode()) <= 255
    write_atomically(target, lambda temporary: temporary.write_bytes(b"content"))
    assert target.read_bytes() == b"content"
    assert [path.name for path in tmp_path.iterdir()] == [name], "no temporary twin is left"


def test_the_prefix_keeps_short_names_whole_and_cuts_long_ones_to_the_bound() -> None:
    assert temporary_prefix("slots.npz") == ".slots.npz."
    long = "b" * 300
    assert temporary_prefix(long) == "." + "b" * TEMPORARY_NAME_BYTES + "."
