"""A folder given to the wrong tool is answered with the right one: a training run folder (``RUN/model`` and
``RUN/best`` inside) given to ``training.export --model``, ``python -m service --model-dir`` or
``service.bench --local --model`` names its models, as ``training.evaluate`` does; the ``onnx`` and ``tensorrt``
backends ask for an export (``manifest.json``), never for a ``config.json``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from plugins.model_files import run_folder_hint
from service.config import ConfigError, ServiceConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``training.run`` leaves: the final model and the best evaluation's, each a model directory."""
    folder = tmp_path_factory.mktemp("run")
    save_tiny_model(folder / "model")
    save_tiny_model(folder / "best")
    return folder


def models_named(run: Path, flag: str) -> str:
    return f"pass {flag} {run / 'best'} (its best evaluation) or {run / 'model'} (its final model)"


def test_the_export_names_the_runs_models(run, tmp_path, capsys):
    from training.export.__main__ import main as export_main

    assert export_main(["--model", str(run), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "config.json not found" in error and models_named(run, "--model") in error
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_server_names_the_runs_models(run):
    with pytest.raises(ConfigError) as refused:
        ServiceConfig(model_dir=run).check_files()
    assert "config.json not found" in str(refused.value) and models_named(run, "--model-dir") in str(refused.value)


@pytest.mark.parametrize("backend", ["onnx", "tensorrt"])
def test_the_accelerated_backends_ask_to_export_one_of_the_runs_models(run, backend):
    with pytest.raises(ConfigError) as refused:
        ServiceConfig(model_dir=run, backend=backend).check_files()
    message = str(refused.value)
    assert f"--backend {backend}: " in message and "is a training run, not an export directory" in message
    assert f"python -m training.export --model {run / 'best'} --out <export dir>" in message
    assert "config.json" not in message  # an export need not hold the source model


def test_the_accelerated_backends_ask_for_an_export_not_a_saved_model(tmp_path):
    """A folder without manifest.json: the message says to run the exporter (it said to point --model-dir at a
    save_pretrained directory, which --backend onnx cannot serve)."""
    with pytest.raises(ConfigError) as refused:
        ServiceConfig(model_dir=tmp_path, backend="onnx").check_files()
    assert "manifest.json not found" in str(refused.value) and "python -m training.export" in str(refused.value)
    assert "save_pretrained" not in str(refused.value)


def test_the_engine_benchmark_names_the_runs_models(run, capsys):
    from service.bench.local import main as local_main

    assert local_main(["--local", "--model", str(run), "--backends", "torch", "--iterations", "1"]) == 2
    error = capsys.readouterr().err
    assert models_named(run, "--model") in error and len(error.strip().splitlines()) == 1


def test_one_hint_for_every_tool(run):
    """Every tool that loads a model with ``from_pretrained`` (``training.evaluate``, ``training.object_recall``,
    ``service.extract``, ...) gets the hint from it (the wording is checked in tests/training/test_cli_hints.py)."""
    from plugins import VideoSlotModel

    with pytest.raises(FileNotFoundError, match=r"config\.json not found") as refused:
        VideoSlotModel.from_pretrained(run)
    assert str(refused.value).endswith(run_folder_hint(run)) and models_named(run, "--model") in str(refused.value)
    assert run_folder_hint(run / "model") == "" and run_folder_hint(run.parent / "nothing-here") == ""
