"""Warm starts copy the tensors that fit and leave the rest at their initialisation; frozen components keep
their weights."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import TINY_MODEL

import training.loop
from plugins import VideoSlotModel
from training.configs import get_config
from training.evaluation import evaluate
from training.loop import fit
from training.metrics import DiscoveryScores
from training.warm_start import WarmStart, freeze_all_but, warm_start

REPO = Path(__file__).resolve().parents[2]


def _model(**decoder: object) -> VideoSlotModel:
    config = copy.deepcopy(TINY_MODEL)
    config["decoder"]["kwargs"].update(decoder)
    return VideoSlotModel(**config)


def test_matching_tensors_are_copied_and_the_others_kept(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _model()
    source.save_pretrained(tmp_path)
    torch.manual_seed(1)
    target = _model(kernel_size=3)  # the decoder's 5x5 layers become 3x3: same names, other shapes
    before = {name: value.clone() for name, value in target.state_dict().items()}

    result = warm_start(target, tmp_path)

    after, trained = target.state_dict(), source.state_dict()
    assert result.loaded and result.reshaped and not result.missing
    assert all(name.startswith("decoder.net.") for name in result.reshaped)
    for name in result.loaded:
        torch.testing.assert_close(after[name], trained[name], rtol=0, atol=0)
    for name in result.reshaped:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert "encoder" in " ".join(result.loaded) and "initializer" in " ".join(result.loaded)
    assert f"{len(result.loaded)} tensors loaded" in result.summary()


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors there \(expected a saved model directory\)$"):
        warm_start(_model(), tmp_path)


def test_a_weights_file_given_for_the_folder_is_refused_saying_so(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is a file; give the folder that holds"):
        warm_start(_model(), tmp_path / "model.safetensors")


def test_a_training_run_folder_is_refused_with_where_its_models_are(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path / "model")
    _model().save_pretrained(tmp_path / "best")
    with pytest.raises(FileNotFoundError, match=r"a training run, whose models are in .*best and .*model"):
        warm_start(_model(), tmp_path)


def test_the_summary_warns_when_most_of_the_model_is_not_in_the_source(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path)
    assert "warning" not in warm_start(_model(), tmp_path).summary()
    few = WarmStart(loaded=["a"], reshaped=["b"], missing=["c"])
    assert few.summary().startswith("warm start: 1 tensor loaded, 1 with another shape")
    assert "warning: only 1 of the model's 3 start from the source" in few.summary()


def test_the_cli_reports_a_bad_source_and_exits_2(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "training.run", "--config", "tiny", "--steps", "1", "--no-progress"]
    command += ["--out", str(tmp_path / "run"), "--init-from", str(tmp_path / "nowhere")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"--init-from {tmp_path / 'nowhere'}: no such folder" in result.stderr


def test_only_the_named_components_train() -> None:
    model = _model()
    freeze_all_but(model, ["decoder", "transition"])
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    expected = {name for name, _ in model.named_parameters() if name.startswith(("decoder.", "transition."))}
    assert trainable == expected and trainable


@pytest.mark.parametrize("components", [["decoderr"], []])
def test_an_unknown_or_empty_component_list_is_refused(components: list[str]) -> None:
    with pytest.raises(ValueError, match="choose one or more of the model's components"):
        freeze_all_but(_model(), components)


def test_frozen_components_keep_their_weights_through_a_run(tmp_path: Path) -> None:
    config = dataclasses.replace(get_config("tiny"), steps=3, eval_every=0, train_only=["decoder"])
    fit(config, tmp_path, progress=False)
    torch.manual_seed(config.seed)  # as fit does before building the model
    initial = dict(VideoSlotModel(**config.model).named_parameters())  # parameters: buffers follow the schedule
    trained = load_file(str(tmp_path / "model" / "model.safetensors"))
    changed = {name for name, value in initial.items() if not torch.equal(value, trained[name])}
    assert changed and all(name.startswith("decoder.") for name in changed)


def test_an_unknown_component_to_train_is_refused_before_the_run_folder_is_written(tmp_path: Path) -> None:
    config = dataclasses.replace(get_config("tiny"), steps=3, eval_every=0, train_only=["decodr"])
    with pytest.raises(ValueError, match="choose one or more of the model's components"):
        fit(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_warm_started_run_evaluates_its_starting_weights_for_best(tmp_path: Path, monkeypatch) -> None:
    """Fine-tuning can make a model worse: the starting weights are evaluated at step 0 and compete for best/.
    Here every evaluation after the first scores worse than any real model, so best/ must hold the start."""
    tiny = get_config("tiny")
    first = fit(dataclasses.replace(tiny, steps=2, eval_every=0), tmp_path / "first", progress=False)
    assert first.model_dir is not None
    calls = 0

    def fine_tuning_made_it_worse(*args, **kwargs) -> DiscoveryScores:
        nonlocal calls
        calls += 1
        scores = evaluate(*args, **kwargs)
        return scores if calls == 1 else dataclasses.replace(scores, video_fg_ari=-1.0, video_mbo=-1.0)

    monkeypatch.setattr(training.loop, "evaluate", fine_tuning_made_it_worse)
    config = dataclasses.replace(tiny, steps=2, eval_every=2, init_from=str(first.model_dir))
    fit(config, tmp_path / "second", progress=False)
    records = [json.loads(line) for line in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [record for record in records if record["kind"] == "eval"]
    assert [record["step"] for record in evaluations] == [0, 2]
    assert (tmp_path / "second" / "samples" / "step-00000000.png").is_file()
    assert evaluations[1]["video_fg_ari"] == evaluations[1]["video_mbo"] == -1.0
    selection = json.loads((tmp_path / "second" / "best" / "selection.json").read_text())
    assert selection["step"] == 0  # best/ holds the starting weights themselves
    best = load_file(str(tmp_path / "second" / "best" / "model.safetensors"))
    start = load_file(str(first.model_dir / "model.safetensors"))
    assert best.keys() == start.keys() and all(torch.equal(best[name], start[name]) for name in start)
