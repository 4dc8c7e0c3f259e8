"""The model card names DAVIS data by its edition where the folders say it, not by the root folder's name, which
every DAVIS download calls ``DAVIS`` (a row had read "DAVIS DAVIS (8 sequences)")."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.card_text import davis_label


@pytest.mark.parametrize(
    ("root", "label"),
    [
        ("/data/davis2016/DAVIS", "DAVIS 2016 (8 sequences)"),
        ("/data/DAVIS-2017-trainval", "DAVIS 2017 (8 sequences)"),
        ("/data/my_clips/DAVIS", "DAVIS my_clips (8 sequences)"),
        ("/data/my_clips", "DAVIS my_clips (8 sequences)"),
        ("/data/clips20160", "DAVIS clips20160 (8 sequences)"),  # no edition: 20160 is not 2016
    ],
)
def test_the_label_names_the_edition_or_a_telling_folder(root: str, label: str) -> None:
    assert davis_label(Path(root), 8) == label
