"""The run's best model: chosen by the selection score, replaced atomically, survives resume, published by the card."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training.best
from plugins import VideoSlotModel
from training.best import BEST_MODEL_DIR, read_selection, selection_score, update_best
from training.configs import get_config
from training.loop import fit
from training.metrics import DiscoveryScores
from training.model_card import main as card_main
from training.run_history import wall_time_s

METRICS = ("video_fg_ari", "video_mbo")


def tiny(steps: int = 6, **top) -> object:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    return dataclasses.replace(config, steps=steps, data=data, eval_every=2, checkpoint_every=2, log_every=1, **top)


def scores(fg_ari: float, mbo: float) -> DiscoveryScores:
    nan = float("nan")
    return DiscoveryScores(
        video_ari=nan,
        video_fg_ari=fg_ari,
        video_mbo=mbo,
        video_miou=nan,
        image_ari=nan,
        image_fg_ari=nan,
        image_mbo=nan,
        image_miou=nan,
        num_videos=1,
        num_frames=2,
        num_invalid_videos=0,
        num_invalid_frames=0,
        background_policy="ignore",
        background_convention="",
        mask_source="decoder_alpha",
        mask_upsampling="",
    )


def small_model(seed: int) -> VideoSlotModel:
    torch.manual_seed(seed)
    return VideoSlotModel(**get_config("tiny").model)


def test_the_best_model_is_the_highest_scoring_evaluation(tmp_path: Path) -> None:
    result = fit(tiny(steps=6), tmp_path, progress=False)
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [record for record in evals if record["kind"] == "eval"]
    assert [record["step"] for record in evals] == [2, 4, 6]
    totals = [sum(0.0 if record[m] != record[m] else record[m] for m in METRICS) for record in evals]
    best_index = totals.index(max(totals))  # the first of equal scores wins
    assert result.best is not None and result.best_model_dir == tmp_path / BEST_MODEL_DIR
    assert result.best.step == evals[best_index]["step"]
    assert result.best.score == pytest.approx(totals[best_index])
    VideoSlotModel.from_pretrained(tmp_path / BEST_MODEL_DIR)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = {row["step"]: row["elapsed_s"] for row in rows if row["kind"] == "train"}
    recorded = json.loads((tmp_path / BEST_MODEL_DIR / "selection.json").read_text())["elapsed_s"]
    assert result.best.elapsed_s == recorded  # the seconds trained to it, for its model card
    assert trained[result.best.step] <= recorded < trained[result.best.step] + 1.0


def test_a_lower_score_keeps_the_best_and_a_higher_one_replaces_it(tmp_path: Path) -> None:
    first, second = small_model(0), small_model(1)
    assert update_best(tmp_path, first, 10, scores(0.5, 0.25), METRICS) is not None
    assert update_best(tmp_path, second, 20, scores(0.5, 0.25), METRICS) is None  # a tie keeps the earlier model
    assert update_best(tmp_path, second, 30, scores(0.25, 0.25), METRICS) is None
    kept = load_file(str(tmp_path / BEST_MODEL_DIR / "model.safetensors"))
    assert all(torch.equal(kept[k], v) for k, v in first.state_dict().items() if k in kept)
    selection = update_best(tmp_path, second, 40, scores(0.75, 0.5), METRICS)
    assert selection is not None and selection.step == 40 and selection.score == 1.25
    assert read_selection(tmp_path) == selection
    assert [p.name for p in tmp_path.iterdir()] == [BEST_MODEL_DIR]  # no staging directory left behind


def test_nan_scores_count_as_zero() -> None:
    assert selection_score(scores(float("nan"), 0.5), METRICS) == 0.5


class _Killed(BaseException):
    """The process dies (SIGKILL): no ``except Exception`` sees it."""


def test_a_run_killed_between_the_two_renames_keeps_its_previous_best(tmp_path: Path, monkeypatch) -> None:
    """``update_best`` moves the previous best aside, then renames its staging folder to ``best/``: a run killed
    before that last rename must still read the previous best back, weights and selection."""
    previous = small_model(0)
    update_best(tmp_path, previous, 10, scores(0.5, 0.5), METRICS)
    real_replace = os.replace

    def replace(source, destination):
        if Path(source).name.startswith(".best-"):  # the staging folder -> best/: the process dies first
            raise _Killed
        real_replace(source, destination)

    monkeypatch.setattr(training.best.os, "replace", replace)
    with pytest.raises(_Killed):
        update_best(tmp_path, small_model(1), 20, scores(0.75, 0.75), METRICS)
    monkeypatch.undo()
    assert not (tmp_path / BEST_MODEL_DIR).exists(), "the kill must come between the two renames"
    selection = read_selection(tmp_path)
    assert selection is not None and (selection.step, selection.score) == (10, 1.0)
    kept = load_file(str(tmp_path / BEST_MODEL_DIR / "model.safetensors"))
    assert kept and all(torch.equal(kept[k], v) for k, v in previous.state_dict().items() if k in kept)


def test_a_resumed_run_must_beat_the_best_score_recorded_before_it_stopped(tmp_path: Path) -> None:
    """The recorded best is made unbeatable before the resume: the later evaluations must not replace it."""
    config = tiny(steps=6)
    fit(config, tmp_path, progress=False, stop_after=4)
    before = read_selection(tmp_path)
    assert before is not None and before.step in (2, 4)
    selection = tmp_path / BEST_MODEL_DIR / "selection.json"
    selection.write_text(json.dumps({**json.loads(selection.read_text()), "score": 100.0}))
    resumed = fit(config, tmp_path, progress=False, resume=True)
    assert resumed.best is not None and (resumed.best.step, resumed.best.score) == (before.step, 100.0)


def test_a_damaged_best_record_is_named_before_a_resume_trains_and_by_the_model_card(tmp_path: Path, capsys) -> None:
    config = tiny(steps=6)
    fit(config, tmp_path, progress=False, stop_after=4)
    record = tmp_path / BEST_MODEL_DIR / "selection.json"
    record.write_text(record.read_text()[:40])  # cut short
    checkpoints = sorted((tmp_path / "checkpoints").iterdir())
    with pytest.raises(ValueError) as refused:
        fit(config, tmp_path, progress=False, resume=True)
    message = str(refused.value)
    assert message.startswith(f"{record} is not a readable record of the best model (JSONDecodeError: ")
    assert f"delete {tmp_path / BEST_MODEL_DIR}" in message
    assert sorted((tmp_path / "checkpoints").iterdir()) == checkpoints  # refused before a step was trained
    assert card_main(["--run", str(tmp_path), "--out", str(tmp_path / "published")]) == 2
    assert f"error: {record} is not a readable record of the best model" in capsys.readouterr().err


def test_an_unknown_selection_metric_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="video_fg_ari"):
        fit(tiny(select_metrics=["fg_ari"]), tmp_path, progress=False)
    assert not tmp_path.joinpath("checkpoints").exists()


def test_the_model_card_publishes_the_best_model_and_says_which_step(tmp_path: Path) -> None:
    result = fit(tiny(steps=6), tmp_path / "run", progress=False)
    assert result.best is not None
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published)]) == 0
    best_weights = (tmp_path / "run" / BEST_MODEL_DIR / "model.safetensors").read_bytes()
    assert (published / "model.safetensors").read_bytes() == best_weights
    assert f"step {result.best.step}" in (published / "MODEL_CARD.md").read_text()
    assert json.loads((published / "scores.json").read_text())["selected_step"] == result.best.step

    final = tmp_path / "final"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(final), "--checkpoint", "final"]) == 0
    final_weights = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    assert (final / "model.safetensors").read_bytes() == final_weights
    assert "| steps | 6; the final model |" in (final / "MODEL_CARD.md").read_text()


def test_a_stopped_run_publishes_its_best_model_and_says_it_stopped(tmp_path: Path, capsys) -> None:
    fit(tiny(steps=6), tmp_path / "run", progress=False, stop_after=4)
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published)]) == 0
    assert "4 of the planned 6 (stopped early)" in (published / "MODEL_CARD.md").read_text()

    assert card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "x"), "--checkpoint", "final"]) == 2
    err = capsys.readouterr().err
    assert "holds no model" in err and "--checkpoint best" in err and not (tmp_path / "x").exists()


def test_a_card_that_cannot_be_made_leaves_the_published_model_as_it_was(tmp_path: Path, capsys) -> None:
    """Evaluation failures (here a DAVIS folder that does not exist) come after the weights were chosen: the
    previous publication must stay whole, not be half replaced, and the error is a message, not a traceback."""
    fit(tiny(steps=4), tmp_path / "run", progress=False)
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published), "--checkpoint", "final"]) == 0
    before = {path.name: path.read_bytes() for path in published.iterdir()}
    with (tmp_path / "run" / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 5, "kind": "tr')  # the cut-off last line of a killed run
    args = ["--run", str(tmp_path / "run"), "--out", str(published), "--davis", str(tmp_path / "no-davis")]
    assert card_main(args) == 2
    assert "was left as it was" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in published.iterdir()} == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".published.")], "staging removed"
    assert wall_time_s(tmp_path / "run", published, step=4) > 0, "the cut-off line is skipped"


def test_a_model_naming_a_component_no_plugin_registers_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    fit(tiny(steps=2), tmp_path / "run", progress=False)
    config_path = tmp_path / "run" / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["name"] = "no_such_decoder"
    config_path.write_text(json.dumps(config))
    args = ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "published"), "--checkpoint", "final"]
    assert card_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_decoder" in err and "Traceback" not in err
    assert not (tmp_path / "published").exists()


def test_the_model_cards_wall_time_leaves_out_the_pause_between_a_kill_and_its_resume(tmp_path: Path) -> None:
    """The card's wall time sums the two invocations' training: at most the time the two ``fit`` calls took, where
    counting from the first start would add the whole pause between them."""
    import time

    def timed_fit(**kwargs: object) -> float:
        started = time.perf_counter()
        fit(tiny(steps=6), tmp_path / "run", progress=False, **kwargs)
        return time.perf_counter() - started

    first_s = timed_fit(stop_after=4)
    time.sleep(4.0)  # the run is down: this is no training time
    second_s = timed_fit(resume=True)
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published), "--checkpoint", "final"]) == 0
    wall = json.loads((published / "scores.json").read_text())["wall_time_s"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in records if r["kind"] == "train"]
    assert elapsed == sorted(elapsed) and wall == elapsed[-1]
    assert 0 < wall <= first_s + second_s + 1e-6, (wall, first_s, second_s)  # 1e-6: float sums
    card = (published / "MODEL_CARD.md").read_text()
    assert f"--model {published} " in card and "DAVIS" not in card


def test_the_model_card_quotes_the_command_that_started_the_run(tmp_path: Path) -> None:
    from training.run import main as run_main

    run = tmp_path / "run"
    assert run_main(["--config", "tiny", "--steps", "2", "--seed", "5", "--out", str(run), "--no-progress"]) == 0
    assert card_main(["--run", str(run), "--out", str(tmp_path / "card")]) == 0
    expected = f"python -m training.run --config tiny --steps 2 --seed 5 --out {run} --no-progress"
    assert f"Trained with `{expected}`" in (tmp_path / "card" / "MODEL_CARD.md").read_text()


def test_checkpoints_and_the_best_model_are_readable_like_the_rest_of_the_run(tmp_path: Path) -> None:
    """Staged folders are renamed into place; they must not keep mkdtemp's owner-only 0700, which would hide the
    best model and the checkpoints from other users of a shared machine while model/ and samples/ are readable."""
    import os
    import stat

    from training.checkpoint import list_checkpoints
    from training.run_folder import TRAIN_CONFIG_FILE, write_train_config

    old_umask = os.umask(0o022)
    try:
        (tmp_path / "run").mkdir()
        write_train_config(tmp_path / "run" / TRAIN_CONFIG_FILE, tiny(steps=2))  # a run killed while it wrote its best
        leftover = tmp_path / "run" / ".best-killed"  # model, before its first checkpoint
        leftover.mkdir()
        fit(tiny(steps=2), tmp_path / "run", progress=False)
    finally:
        os.umask(old_umask)
    for folder in (tmp_path / "run" / BEST_MODEL_DIR, list_checkpoints(tmp_path / "run")[-1]):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert not leftover.exists()


def test_the_model_card_does_not_publish_into_a_folder_of_other_files(tmp_path: Path, capsys) -> None:
    """An export's folder (graphs beside the weights they were made from) or a run folder would be mixed with the
    new model; a folder published to before is replaced as usual."""
    fit(tiny(steps=2), tmp_path / "run", progress=False)
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text("{}")
    (export / "first_step.onnx").write_bytes(b"graph")
    with pytest.raises(SystemExit):
        card_main(["--run", str(tmp_path / "run"), "--out", str(export)])
    assert "holds other files than a model published there (first_step.onnx, manifest.json)" in capsys.readouterr().err
    assert sorted(path.name for path in export.iterdir()) == ["first_step.onnx", "manifest.json"]
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published)]) == 0
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published)]) == 0  # again: replaced
