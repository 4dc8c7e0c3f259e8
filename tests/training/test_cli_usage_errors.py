"""Bad command-line values of the training tools are usage errors naming the flag, raised before any slow work
(not tracebacks, and not failures after a long evaluation when the result is written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.ceiling import main as ceiling_main
from training.datasets.__main__ import main as datasets_main
from training.evaluate import main as evaluate_main
from training.model_card import main as model_card_main
from training.object_recall import main as object_recall_main

DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "service" / "models" / "default")

CASES = {
    "ceiling --videos 0": (ceiling_main, ["--data", "synthetic:easy", "--videos", "0"], "--videos must be at least 1"),
    "ceiling --mask-size 0": (ceiling_main, ["--data", "synthetic:easy", "--mask-size", "0"], "--mask-size"),
    "ceiling --json in a missing folder": (
        ceiling_main,
        ["--data", "synthetic:easy", "--json", "/missing/folder/c.json"],
        "/missing/folder does not exist",
    ),
    "object_recall --videos -2": (
        object_recall_main,
        ["--model", DEFAULT_MODEL, "--videos", "-2"],
        "--videos must be at least 1",
    ),
    "evaluate --json in a missing folder": (
        evaluate_main,
        ["--model", DEFAULT_MODEL, "--data", "synthetic:easy", "--json", "/missing/folder/e.json"],
        "/missing/folder does not exist",
    ),
    "evaluate --json where no file can be made": (
        evaluate_main,
        ["--model", DEFAULT_MODEL, "--data", "synthetic:easy", "--json", "/proc/e.json"],
        "--json /proc/e.json: cannot write in /proc",
    ),
    "ceiling --json where no file can be made": (
        ceiling_main,
        ["--data", "synthetic:easy", "--json", "/proc/c.json"],
        "--json /proc/c.json: cannot write in /proc",
    ),
    "evaluate --json that is a folder": (
        evaluate_main,
        ["--model", DEFAULT_MODEL, "--data", "synthetic:easy", "--json", str(Path(__file__).parent)],
        "is a folder; give a file name",
    ),
    "object_recall --plot without .png": (
        object_recall_main,
        ["--model", DEFAULT_MODEL, "--plot", str(Path(__file__).parent / "chart")],
        "the file name must end in .png",
    ),
    "model_card --run that is no run": (
        model_card_main,
        ["--run", "/nonexistent/run", "--out", "/tmp/unused"],
        "no train_config.json there",
    ),
    "datasets generate --out that is a file": (
        datasets_main,
        ["generate", "--videos", "1", "--out", __file__],
        "is a file; give a folder for the dataset",
    ),
    "datasets generate --out below a file": (
        datasets_main,
        ["generate", "--videos", "1", "--out", str(Path(__file__) / "sub")],
        f"{__file__} is a file; give a folder for the dataset",
    ),
    "model_card --out below a file": (
        model_card_main,
        ["--run", "/nonexistent/run", "--out", str(Path(__file__) / "sub")],
        f"{__file__} is a file; give a folder for the model",
    ),
    "datasets generate --seed -1": (
        datasets_main,
        ["generate", "--videos", "1", "--out", "/tmp/unused", "--seed", "-1"],
        "--seed must be in [0, 2**30)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_values_are_usage_errors_naming_the_flag(case, capsys):
    main, argv, message = CASES[case]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_evaluate_on_cuda_without_a_gpu_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        evaluate_main(["--model", DEFAULT_MODEL, "--data", "synthetic:easy", "--device", "cuda"])
    assert exited.value.code == 2 and "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--batch-size", "-1"), ("--workers", "-1")])
def test_run_refuses_impossible_data_settings(flag, value, tmp_path, capsys):
    from training.run import main as run_main

    assert run_main(["--config", "tiny", flag, value, "--out", str(tmp_path / "run")]) == 2
    setting = {"--batch-size": "batch_size", "--workers": "num_workers"}[flag]
    assert f"{setting} must be >= " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("--steps", "0"), ("--steps", "-3")])  # --num-slots: test_loop.py
def test_run_names_a_count_flag_below_one(flag, value, tmp_path, capsys):
    from training.run import main as run_main

    assert run_main(["--config", "tiny", flag, value, "--out", str(tmp_path / "run")]) == 2
    assert f"error: {flag} must be at least 1, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_encoder_weights_reach_the_encoder_and_their_absence_is_warned_about(tmp_path):
    from training.configs import get_config
    from training.run import apply_overrides, missing_pretrained_weights, parse_args

    dinov2 = get_config("smoothsa_dinov2")
    assert "--encoder-weights" in (missing_pretrained_weights(dinov2) or "")
    assert missing_pretrained_weights(get_config("smoothsa_cnn")) is None
    weights = tmp_path / "dinov2.safetensors"
    weights.write_bytes(b"")
    args = parse_args(["--config", "smoothsa_dinov2", "--encoder-weights", str(weights)])
    config = apply_overrides(dinov2, args)
    assert config.model["encoder"]["kwargs"] == {**dinov2.model["encoder"]["kwargs"], "weights": str(weights)}
    assert missing_pretrained_weights(config) is None
    with pytest.raises(ValueError, match="takes no pretrained weights"):
        apply_overrides(get_config("smoothsa_cnn"), parse_args(["--config", "x", "--encoder-weights", str(weights)]))


@pytest.mark.parametrize("seed", ["-1", str(2**30)])
def test_run_names_a_seed_out_of_range(seed, tmp_path, capsys):
    from training.run import main as run_main

    assert run_main(["--config", "tiny", "--seed", seed, "--out", str(tmp_path / "run")]) == 2
    assert f"--seed must be in [0, 2**30), got {seed}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_output_that_is_a_device_is_left_to_the_write(capsys):
    """``--json /dev/stdout`` writes the scores to the terminal; no temporary file can be made in /dev as a user."""
    import argparse

    from training.cli_checks import require_output_folder

    require_output_folder(argparse.ArgumentParser(), "--json", Path("/dev/null"))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_an_output_that_would_replace_a_file_of_the_model_read_is_refused(name, tmp_path, capsys):
    """``--json MODEL/config.json`` wrote the scores over the model's configuration, which no tool could read after;
    other files there (a model card's scores, its pictures) may be rewritten."""
    from training.run import main as run_main

    assert run_main(["--config", "tiny", "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    model = tmp_path / "run" / "model"
    before = (model / name).read_bytes()
    flags = ["--model", str(model), "--data", "synthetic:easy", "--videos", "1", "--frames", "2"]
    with pytest.raises(SystemExit):
        evaluate_main([*flags, "--json", str(model / name)])
    assert f"--json {model / name} is a file of the model in {model}: it would be replaced" in capsys.readouterr().err
    assert (model / name).read_bytes() == before
    assert evaluate_main([*flags, "--json", str(model / "scores.json")]) == 0
