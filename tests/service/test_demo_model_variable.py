"""``python -m service.demo`` without ``--model-dir`` serves the model the server's own settings reader names:
``SLOTSTREAM_MODEL_DIR`` or its other spelling ``SLOTSTREAM_MODEL``, a contradiction between them refused as the
server refuses it, and other server settings (which the demo's server ignores) never read."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import DEFAULT_MODEL_DIR
from service.demo import default_model_dir
from service.demo import main as demo_main


def _demo(tmp_path: Path) -> int:
    return demo_main(["--out-dir", str(tmp_path / "out"), "--frames", "2"])


def test_the_demo_reads_the_server_alias_of_the_model_variable(tmp_path, capsys, monkeypatch):
    """``SLOTSTREAM_MODEL=... make demo`` served the embedded model: the demo read only SLOTSTREAM_MODEL_DIR."""
    monkeypatch.delenv("SLOTSTREAM_MODEL_DIR", raising=False)
    monkeypatch.setenv("SLOTSTREAM_MODEL", str(tmp_path / "from-alias"))
    assert _demo(tmp_path) == 2
    assert f"{tmp_path / 'from-alias'} is not a model directory" in capsys.readouterr().err


def test_the_demo_refuses_model_variables_that_contradict_each_other(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLOTSTREAM_MODEL", str(tmp_path / "a"))
    monkeypatch.setenv("SLOTSTREAM_MODEL_DIR", str(tmp_path / "b"))
    assert _demo(tmp_path) == 2
    err = capsys.readouterr().err
    assert f"SLOTSTREAM_MODEL_DIR='{tmp_path / 'b'}' contradicts SLOTSTREAM_MODEL='{tmp_path / 'a'}'" in err, err


def test_the_demo_ignores_other_server_settings_it_cannot_read(tmp_path, capsys, monkeypatch):
    """A bad value of another setting stops the server, not the demo, whose server starts without them."""
    monkeypatch.setenv("SLOTSTREAM_MAX_STREAMS", "many")
    monkeypatch.setenv("SLOTSTREAM_MODEL", str(tmp_path / "m"))
    monkeypatch.setenv("SLOTSTREAM_MODEL_DIR", str(tmp_path / "m"))  # the same folder: no contradiction
    assert _demo(tmp_path) == 2
    assert f"{tmp_path / 'm'} is not a model directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_MODEL_DIR),
        ({"SLOTSTREAM_MODEL_DIR": "/models/x"}, Path("/models/x")),
        ({"SLOTSTREAM_MODEL": "/models/y", "SLOTSTREAM_MAX_STREAMS": "many"}, Path("/models/y")),
    ],
)
def test_the_default_model_folder_follows_the_server_reader(environ, expected):
    assert default_model_dir(environ) == Path(expected)
