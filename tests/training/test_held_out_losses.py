"""A run whose ``--val-data`` holds recordings without masks is evaluated by its own losses on them: ``val_loss``
eval lines, ``best/`` kept by the lowest, a resume that keeps selecting by it, and a model card that says which
step was chosen and by what. Labelled evaluation and runs without ``--val-data`` keep their behaviour."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from plugins import VideoSlotModel, default_registry
from plugins.interfaces import Loss
from plugins.testing import TINY_MODEL, build_tiny
from training.best import BEST_MODEL_DIR, LOSS_SELECTION_REASON, read_selection, update_best, update_best_by_loss
from training.config import TrainConfig
from training.configs import get_config
from training.datasets import build_dataset
from training.datasets.export import write_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.loss_evaluation import HeldOutLosses, held_out_losses
from training.metrics import DiscoveryScores
from training.model_card import main as card_main
from training.run_data import validation_data


def _recordings(folder: Path, seeds: tuple[int, ...]) -> Path:
    """A ``videos:`` folder of unlabelled recordings of 8 frames, one per seed."""
    folder.mkdir()
    for seed in seeds:
        write_mp4(folder / f"cam_{seed}.mp4", generate_video("easy", seed, 8, (32, 48)).frames)
    return folder


def _config(root: Path, steps: int = 4) -> TrainConfig:
    """The tiny experiment trained on two recordings and evaluated on two others, none labelled."""
    tiny = get_config("tiny")
    train = root / "train" if (root / "train").exists() else _recordings(root / "train", (1, 2))
    held_out = root / "held_out" if (root / "held_out").exists() else _recordings(root / "held_out", (3, 4))
    data = dataclasses.replace(
        tiny.data, spec=f"videos:{train}", val_spec=f"videos:{held_out}", num_workers=0, val_videos=2, val_frames=4
    )
    return dataclasses.replace(tiny, data=data, steps=steps, eval_every=1, checkpoint_every=2, log_every=1)


def _records(run: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def _independent_losses(config: TrainConfig, model_dir: Path) -> tuple[float, dict[str, float]]:
    """The weighted total and each term of ``config``'s losses on its first ``val_videos`` held-out videos, for
    the saved model in ``model_dir``: built here from the registry and the files, not by the run's code."""
    model = VideoSlotModel.from_pretrained(model_dir).eval()
    losses = [(t.name, t.weight, default_registry().build("losses", t.name, t.kwargs)) for t in config.losses]
    assert all(isinstance(loss, Loss) for _, _, loss in losses)
    size = tuple(config.model["image_size"])
    videos = build_dataset(config.data.val_spec, "val", config.data.val_frames, size, center_crop=True)
    terms = {name: 0.0 for name, _, _ in losses}
    for index in range(config.data.val_videos):
        torch.manual_seed(config.seed)  # the losses draw nothing in eval mode: any seed gives the same values
        with torch.no_grad():
            output = model(videos[index].frames.unsqueeze(0))
            for name, _, loss in losses:
                terms[name] += float(loss(output, 1.0)) / config.data.val_videos
    total = sum(weight * terms[name] for name, weight, _ in losses if name != "preheat_mse")  # self-distillation
    return total, terms


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path]:
    """A finished 4-step run evaluated after every step on two unlabelled held-out recordings."""
    root = tmp_path_factory.mktemp("held_out")
    config = _config(root)
    fit(config, root / "run", progress=False, command="train it")
    return config, root / "run"


def test_each_evaluation_records_the_held_out_losses(held_out_run: tuple[TrainConfig, Path]) -> None:
    _, run = held_out_run
    evals = _records(run, "eval")
    assert [row["step"] for row in evals] == [1, 2, 3, 4]
    for row in evals:
        assert set(row) == {
            "step",
            "kind",
            "val_loss",
            "val_reconstruction_mse",
            "val_preheat_mse",
            "num_videos",
            "num_frames",
            "val_frames",
            "frame_fit",
        }
        assert (row["num_videos"], row["num_frames"], row["val_frames"], row["frame_fit"]) == (2, 8, 4, "crop")
        # the tiny config's weights: reconstruction 1; preheat_mse (100) is recorded but not summed
        assert row["val_loss"] == pytest.approx(row["val_reconstruction_mse"] * 1.0, rel=1e-9)
        assert row["val_preheat_mse"] is not None
    assert len({row["val_loss"] for row in evals}) == 4  # the weights changed: so did the losses
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("eval/val_loss")] == [1, 2, 3, 4]
    assert "eval/val_preheat_mse" in events.Tags()["scalars"]


def test_best_is_the_lowest_held_out_loss_and_reproduces(held_out_run: tuple[TrainConfig, Path]) -> None:
    config, run = held_out_run
    evals = _records(run, "eval")
    lowest = min(evals, key=lambda row: row["val_loss"])
    selection = json.loads((run / BEST_MODEL_DIR / "selection.json").read_text())
    assert selection["step"] == lowest["step"] and selection["score"] == lowest["val_loss"]
    assert selection["metrics"] == ["val_loss"] and selection["lower_is_better"] is True
    assert selection["reason"] == LOSS_SELECTION_REASON and "no labels" in selection["reason"]
    assert selection["scores"]["val_loss"] == lowest["val_loss"]
    # The saved best model, its losses computed again without the run's code, gives the recorded value.
    total, terms = _independent_losses(config, run / BEST_MODEL_DIR)
    assert total == pytest.approx(selection["score"], rel=1e-5)
    assert terms["reconstruction_mse"] == pytest.approx(lowest["val_reconstruction_mse"], rel=1e-5)
    assert terms["preheat_mse"] == pytest.approx(lowest["val_preheat_mse"], rel=1e-5)
    read = read_selection(run)
    assert read is not None and read.lower_is_better and read.metrics == ("val_loss",)


def test_evaluating_by_losses_does_not_move_the_training_randomness(
    held_out_run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    """The same run evaluated only at its end trains through the same losses step by step."""
    config, run = held_out_run
    fit(dataclasses.replace(config, eval_every=0), tmp_path / "run", progress=False)
    trained = [(row["step"], row["loss"]) for row in _records(run, "train")]
    assert [(row["step"], row["loss"]) for row in _records(tmp_path / "run", "train")] == trained
    assert [row["step"] for row in _records(tmp_path / "run", "eval")] == [4]
    assert _records(tmp_path / "run", "eval")[0]["val_loss"] == _records(run, "eval")[-1]["val_loss"]


def test_a_resumed_run_keeps_selecting_by_the_lowest_loss(
    held_out_run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    config, run = held_out_run
    fit(config, tmp_path / "run", progress=False, stop_after=2)
    before = read_selection(tmp_path / "run")
    assert before is not None and before.lower_is_better and before.step in (1, 2)
    resumed = fit(config, tmp_path / "run", progress=False, resume=True)
    assert resumed.best is not None and resumed.scores is None
    evals = _records(tmp_path / "run", "eval")
    assert [row["val_loss"] for row in evals] == [row["val_loss"] for row in _records(run, "eval")]
    lowest = min(evals, key=lambda row: row["val_loss"])
    assert (resumed.best.step, resumed.best.score) == (lowest["step"], lowest["val_loss"])
    best = (tmp_path / "run" / BEST_MODEL_DIR / "model.safetensors").read_bytes()
    assert best == (run / BEST_MODEL_DIR / "model.safetensors").read_bytes()


def test_a_resumed_run_must_beat_the_loss_recorded_before_it_stopped(
    held_out_run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    """The recorded best's loss is made unbeatable (0) before the resume: no later evaluation replaces it."""
    config, _ = held_out_run
    fit(config, tmp_path / "run", progress=False, stop_after=2)
    path = tmp_path / "run" / BEST_MODEL_DIR / "selection.json"
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, "score": 0.0}))
    resumed = fit(config, tmp_path / "run", progress=False, resume=True)
    assert resumed.best is not None and (resumed.best.step, resumed.best.score) == (recorded["step"], 0.0)


def test_the_model_card_publishes_the_lowest_loss_model_unscored_and_says_why(
    held_out_run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    config, run = held_out_run
    selection = read_selection(run)
    assert selection is not None
    out = tmp_path / "published"
    assert card_main(["--run", str(run), "--out", str(out)]) == 0
    assert (out / "model.safetensors").read_bytes() == (run / BEST_MODEL_DIR / "model.safetensors").read_bytes()
    card = (out / "MODEL_CARD.md").read_text()
    spec = config.data.val_spec
    assert "## Not scored" in card and "## Object discovery" not in card
    assert f"The run's evaluation data (`{spec}`) has no labels" in card
    loss = f"{selection.score:.5g}"
    assert f"the published weights are those of step {selection.step}, the lowest held-out loss (val_loss {loss})" in (
        card
    )
    assert f"those of step {selection.step}: selected by the lowest held-out" in card
    assert f"on the first 2 videos of `{spec}`" in card
    assert json.loads((out / "scores.json").read_text())["selected_step"] == selection.step


def test_a_best_chosen_by_loss_keeps_the_lowest_and_never_a_nan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VideoSlotModel(**get_config("tiny").model)

    def losses(total: float) -> HeldOutLosses:
        return HeldOutLosses(total, {"reconstruction_mse": total}, 1, 4)

    assert update_best_by_loss(tmp_path, model, 1, losses(float("nan"))) is None
    assert not (tmp_path / BEST_MODEL_DIR).exists()
    assert update_best_by_loss(tmp_path, model, 2, losses(0.5)) is not None
    assert update_best_by_loss(tmp_path, model, 3, losses(0.5)) is None  # a tie keeps the earlier model
    assert update_best_by_loss(tmp_path, model, 4, losses(0.75)) is None
    assert update_best_by_loss(tmp_path, model, 5, losses(float("inf"))) is None
    selection = update_best_by_loss(tmp_path, model, 6, losses(0.25))
    assert selection is not None and read_selection(tmp_path) == selection and selection.step == 6


def test_a_scored_evaluation_replaces_a_best_chosen_by_loss(tmp_path: Path) -> None:
    """A loss and a score cannot be compared: a run evaluated with labels now (its videos labelled since) keeps the
    scored model, whatever the recorded loss (here above the score, which as a score would keep it)."""
    torch.manual_seed(0)
    model = VideoSlotModel(**get_config("tiny").model)
    update_best_by_loss(tmp_path, model, 2, HeldOutLosses(5.0, {"reconstruction_mse": 5.0}, 1, 4))
    nan = float("nan")
    scores = DiscoveryScores(nan, 0.1, 0.1, nan, nan, nan, nan, nan, 1, 4, 0, 0, "ignore", "", "decoder", "")
    selection = update_best(tmp_path, model, 4, scores, ("video_fg_ari", "video_mbo"))
    assert selection is not None and not selection.lower_is_better and read_selection(tmp_path) == selection


def test_a_loss_that_cannot_be_computed_in_eval_mode_is_left_out_with_a_note(tmp_path: Path) -> None:
    class _TrainingOnly(Loss):
        name = "training_only"

        def forward(self, output, progress):  # type: ignore[no-untyped-def]
            raise ValueError("needs the training outputs")

    torch.manual_seed(0)
    model = VideoSlotModel(**get_config("tiny").model)
    videos = build_dataset(f"videos:{_recordings(tmp_path / 'held_out', (3,))}", "val", 4, (32, 32))
    built = default_registry().build("losses", "reconstruction_mse", {})
    assert isinstance(built, Loss)
    losses = held_out_losses(
        model, [("reconstruction_mse", 2.0, built), ("training_only", 1.0, _TrainingOnly())], videos, seed=0
    )
    assert losses.terms["training_only"] is None and "needs the training outputs" in losses.skipped["training_only"]
    assert losses.total == pytest.approx(2.0 * losses.terms["reconstruction_mse"])
    assert losses.to_dict()["val_training_only"] is None
    assert model.training  # the model's mode is given back


def test_a_ramped_loss_is_computed_at_the_end_of_training_at_every_evaluation(tmp_path: Path) -> None:
    """``attention_distillation`` ramps from 0 to 1 over training: held out, it is always at its full weight."""
    torch.manual_seed(0)
    model = VideoSlotModel(**get_config("tiny").model).eval()
    videos = build_dataset(f"videos:{_recordings(tmp_path / 'held_out', (3,))}", "val", 4, (32, 32))
    distillation = default_registry().build("losses", "attention_distillation", {})
    assert isinstance(distillation, Loss)
    with torch.no_grad():
        expected = float(distillation(model(videos[0].frames.unsqueeze(0)), 1.0))
    losses = held_out_losses(model, [("attention_distillation", 1.0, distillation)], videos, seed=0)
    assert expected > 0 and losses.terms["attention_distillation"] == pytest.approx(expected, rel=1e-6)


def test_held_out_losses_draw_the_same_noise_every_time_and_leave_the_generator_as_it_was(tmp_path: Path) -> None:
    """A model that samples noise at inference (``eval_noise="sample"``) gets the same noise at every evaluation."""
    config = get_config("tiny").model
    torch.manual_seed(0)
    model = VideoSlotModel(
        **{**config, "initializer": {"name": "smoothsa_preheat", "kwargs": {"eval_noise": "sample"}}}
    )
    videos = build_dataset(f"videos:{_recordings(tmp_path / 'held_out', (3,))}", "val", 4, (32, 32))
    built = default_registry().build("losses", "reconstruction_mse", {})
    assert isinstance(built, Loss)
    torch.manual_seed(1)
    first = held_out_losses(model, [("reconstruction_mse", 1.0, built)], videos, seed=5)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after)  # the evaluation drew nothing from the training generator
    torch.manual_seed(2)
    assert held_out_losses(model, [("reconstruction_mse", 1.0, built)], videos, seed=5) == first
    assert held_out_losses(model, [("reconstruction_mse", 1.0, built)], videos, seed=6) != first  # noise is drawn


def test_the_run_says_how_it_evaluates_and_own_unlabelled_data_says_how_to(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    evaluated = validation_data(config)
    assert evaluated.by_loss and evaluated.videos is not None and len(evaluated.videos) == 2  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "so the evaluations compute the run's own weighted losses on its first 2 videos" in out
    assert "not held out" not in out
    same = dataclasses.replace(config, data=dataclasses.replace(config.data, val_spec=config.data.spec))
    assert validation_data(same).by_loss
    assert "is the training data: its evaluation videos are the first frames" in capsys.readouterr().out
    own = dataclasses.replace(config, data=dataclasses.replace(config.data, val_spec=None))
    assert validation_data(own).videos is None
    out = capsys.readouterr().out
    assert "so this run is not evaluated: no best/ (model/ is the result)" in out
    assert "pass --val-data with held-out recordings" in out and "on unlabelled ones each evaluation computes" in out


def test_an_evaluation_that_missed_a_term_the_best_computed_never_replaces_it(tmp_path: Path) -> None:
    """A loss that failed once (say, out of memory) leaves its term out of that evaluation's total, which is then
    not comparable with the best's; an evaluation that computed a term the best lacked replaces it."""
    model = build_tiny(TINY_MODEL, seed=0)
    whole = HeldOutLosses(0.5, {"reconstruction_mse": 0.3, "flaky": 0.2}, 2, 8)
    partial = HeldOutLosses(0.1, {"reconstruction_mse": 0.1, "flaky": None}, 2, 8, {"flaky": "RuntimeError: oom"})
    assert update_best_by_loss(tmp_path, model, 1, whole) is not None
    assert update_best_by_loss(tmp_path, model, 2, partial) is None, "a lower total that left a term out"
    (tmp_path / "other").mkdir()
    assert update_best_by_loss(tmp_path / "other", model, 1, partial) is not None
    assert update_best_by_loss(tmp_path / "other", model, 2, whole) is not None, "it computed the term the best lacked"
    read = read_selection(tmp_path / "other")
    assert read is not None and read.step == 2
