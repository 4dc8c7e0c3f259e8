"""``generate --overwrite`` replaces a dataset holding hidden OS files (which the readers ignore too)."""

from __future__ import annotations

import pytest

from training.datasets.__main__ import main as cli_main

HIDDEN = [
    ".DS_Store",
    "metadata/.DS_Store",
    "metadata/._easy-00000.json",
    "JPEGImages/.DS_Store",
    "JPEGImages/._16p",
    "JPEGImages/16p/.DS_Store",
    "Annotations/16p/._easy-00000",
    "videos/.DS_Store",
    "videos/._easy-00000.mp4",
]


def test_overwrite_replaces_a_dataset_with_hidden_os_files(tmp_path):
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "1", "--frames", "2", "--size", "16", "--out", str(out)]
    assert cli_main([*base, "--mp4"]) == 0
    for name in HIDDEN:
        (out / name).write_bytes(b"\0\5\26\7")  # Finder metadata, AppleDouble files
    assert cli_main([*base[:4], "2", *base[5:], "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "metadata").iterdir()) == ["easy-00000.json", "easy-00001.json"]
    assert not (out / "videos").exists()  # the hidden files went with the folders generate owns
    assert (out / ".DS_Store").is_file()  # outside them, nothing is touched


def test_overwrite_still_refuses_a_visible_foreign_file_beside_hidden_ones(tmp_path, capsys):
    out = tmp_path / "data"
    base = ["generate", "--level", "easy", "--videos", "1", "--frames", "2", "--size", "16", "--out", str(out)]
    assert cli_main(base) == 0
    (out / "metadata" / ".DS_Store").write_bytes(b"\0")
    (out / "metadata" / "notes.txt").write_text("a user's file")
    with pytest.raises(SystemExit):
        cli_main([*base, "--overwrite"])
    assert f"but {out / 'metadata' / 'notes.txt'} is not part of one" in capsys.readouterr().err
