"""A leading ``~`` in a path flag means the home folder wherever a shell would not expand it (``--out=~/x``, a quoted
path): the tools made a folder called ``~`` in the working directory, or said a model there did not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.datasets.__main__ import main as datasets_main
from training.run import parse_args


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_generate_writes_under_the_home_folder(home: Path) -> None:
    assert datasets_main(["generate", "--videos", "1", "--frames", "2", "--size", "32", "--out=~/data"]) == 0
    assert (home / "data" / "JPEGImages").is_dir() and not (home.parent / "~").exists()


def test_the_run_flags_kept_as_text_are_expanded_too(home: Path) -> None:
    args = parse_args(["--config", "tiny", "--out=~/run", "--init-from=~/model", "--encoder-weights=~/w.pth"])
    assert (args.out, args.init_from, args.encoder_weights) == tuple(
        str(home / name) for name in ("run", "model", "w.pth")
    )


def test_a_source_under_the_home_folder_is_read_by_extract(home: Path) -> None:
    """Sources are paths too: quoted, ``~/clip.gif`` was looked for in a folder called ``~``."""
    from service.client.__main__ import main as client_main
    from service.extract import main as extract_main

    assert client_main(["synth", "~/clip.gif", "--frames", "2"]) == 0
    assert extract_main(["~/clip.gif", "--out=~/trajectories", "--quiet"]) == 0
    assert (home / "trajectories" / "clip.npz").is_file()


def test_a_home_folder_of_no_user_is_a_usage_error(capsys) -> None:
    """``~nosuchuser/...`` ended in a RuntimeError traceback."""
    from service.config import ConfigError, ServiceConfig

    with pytest.raises(SystemExit) as exited:
        parse_args(["--config", "tiny", "--out", "~slotstream-no-such-user/run"])
    assert exited.value.code == 2 and "~slotstream-no-such-user/run: Could not determine" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="~slotstream-no-such-user/m"):
        ServiceConfig.from_sources([], environ={"SLOTSTREAM_MODEL_DIR": "~slotstream-no-such-user/m"})
