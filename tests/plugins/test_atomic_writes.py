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


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    """``--slots latest.npz`` pointing at a file elsewhere: the rename replaced the link with a file of its own and
    left the target stale, where ``--jsonl`` and ``--out`` write through theirs."""
    (tmp_path / "target").mkdir()
    target = tmp_path / "target" / "slots.npz"
    target.write_bytes(b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    write_atomically(link, lambda temporary: temporary.write_bytes(b"new"))
    assert link.is_symlink() and target.read_bytes() == b"new"
