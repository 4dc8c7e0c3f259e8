"""Property probes (``python -m downstream.probes``): slots paired with objects by Hungarian matching on mask IoU,
read-outs trained in standardised units that predict in the properties' own, scores beside guessing without the
slots, the probe saved and read back, and what the command refuses."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from downstream.dynamics import DynamicsConfig, fit_dynamics
from downstream.head_folder import check_head_folder, save_head
from downstream.probes import (
    PROPERTIES,
    MatchedSlots,
    ProbeConfig,
    fit_probe,
    load_probe,
    match_frame,
    probe_scores,
)
from downstream.probes.__main__ import main
from downstream.probes.properties import ObjectProperty
from downstream.probes.scores import r_squared
from downstream.property_probe import PropertyProbe
from plugins import default_registry
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE

SHAPE = next(prop for prop in PROPERTIES if prop.name == "shape")
POSITION = next(prop for prop in PROPERTIES if prop.name == "position")


def test_each_frame_pairs_slots_and_objects_for_the_largest_total_iou():
    # slot 0 covers object 1 and half of object 2; slot 1 the rest of object 2; slot 2 only background
    labels = torch.tensor([[0, 0, 0, 1], [2, 2, 2, 2]])
    ids = torch.tensor([[1, 1, 2, 2], [0, 0, 0, 0]])
    pairs = match_frame(labels, ids)
    # slot 0 with object 1: 2 / 3; slot 1 with object 2: 1 / 2 (slot 0 with object 2 would be 1 / 4)
    assert pairs == [(0, 1, pytest.approx(2 / 3)), (1, 2, pytest.approx(1 / 2))]
    assert match_frame(labels, ids, min_iou=0.6) == [(0, 1, pytest.approx(2 / 3))]


def test_void_pixels_are_left_out_and_the_background_is_never_matched():
    labels = torch.tensor([[0, 0, 1, 1]])
    ids = torch.tensor([[1, -1, 0, 0]])  # slot 1 holds only background; a void pixel under slot 0
    assert match_frame(labels, ids) == [(0, 1, pytest.approx(1.0))]
    assert match_frame(labels, torch.zeros_like(ids)) == []


def test_the_head_reads_every_property_of_every_slot_and_splits_its_outputs():
    probe = PropertyProbe(8, categorical={"shape": 7, "size": 3}, continuous={"box": 4})
    outputs = probe(torch.randn(2, 5, 4, 8))  # [B, T, K, D]
    assert outputs.shape == (2, 5, 4, 7 + 3 + 4)
    parts = probe.split(outputs)
    assert list(parts) == ["shape", "size", "box"] and parts["box"].shape == (2, 5, 4, 4)
    assert torch.equal(parts["size"], outputs[..., 7:10])
    with pytest.raises(ValueError, match=r"reads slots \[\.\.\., 8\], got \[3, 6\]"):
        probe(torch.randn(3, 6))
    with pytest.raises(ValueError, match="at least one property"):
        PropertyProbe(8)
    with pytest.raises(ValueError, match="both categorical and continuous"):
        PropertyProbe(8, categorical={"x": 2}, continuous={"x": 2})
    assert isinstance(default_registry().build("heads", "property_probe", probe.constructor_kwargs()), PropertyProbe)


def _pairs(count: int, seed: int) -> MatchedSlots:
    """Slots whose first value decides the class (two of ``SHAPE``'s) and whose position is a fixed affine map of
    them, on a scale a thousand times smaller than the slots', off centre."""
    generator = torch.Generator().manual_seed(seed)
    slots = torch.randn(count, 6, generator=generator)
    position = 1e-3 * slots[:, :2] @ torch.tensor([[2.0, -1.0], [0.5, 3.0]]) + torch.tensor([0.3, 0.7])
    targets = {"shape": (slots[:, 0] > 0).long(), "position": position}
    return MatchedSlots(slots, targets, torch.ones(count), torch.zeros(count, dtype=torch.int64), count)


def test_a_trained_probe_predicts_in_the_properties_own_units_and_beats_guessing():
    properties: tuple[ObjectProperty, ...] = (SHAPE, POSITION)
    train, test = _pairs(400, seed=0), _pairs(200, seed=1)
    probe, loss = fit_probe(train, properties, ProbeConfig(steps=2000, properties=("shape", "position")), False)
    assert loss < 0.5
    scores = {score.name: score for score in probe_scores(probe, properties, train, test)}
    assert scores["shape"].score > 0.95 and scores["shape"].baseline == pytest.approx(
        float((test.targets["shape"] == int(torch.bincount(train.targets["shape"]).argmax())).float().mean())
    )
    assert scores["position"].score > 0.98 and abs(scores["position"].baseline) < 0.05
    with torch.no_grad():
        predicted = probe.split(probe(test.slots))["position"]
    # in the targets' units (about 0.3 and 0.7, spread by about 3e-3), not standardised ones (spread by 1)
    assert float((predicted - test.targets["position"]).abs().mean()) < 5e-4


def test_r_squared_is_one_when_exact_and_zero_for_the_mean():
    truth = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])  # the second value never varies: left out
    assert r_squared(truth, truth) == pytest.approx(1.0)
    assert r_squared(truth.mean(dim=0, keepdim=True).expand_as(truth), truth) == pytest.approx(0.0)
    assert r_squared(torch.tensor([[3.0, 5.0], [2.0, 5.0], [1.0, 5.0]]), truth) == pytest.approx(-3.0)


def test_the_command_trains_scores_and_saves_a_probe_that_reads_back(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "probe"
    argv = ["--model", str(model), "--out", str(out), "--data", "synthetic:easy", "--no-progress"]
    small = ["--train-videos", "3", "--test-videos", "2", "--steps", "5", "--min-iou", "0"]
    assert main([*argv, *small, "--properties", "colour,position"]) == 0
    printed = capsys.readouterr().out
    assert "matched slots:" in printed and "colour  accuracy" in printed and "position        R²" in printed
    assert {path.name for path in out.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, "scores.json", "scores.png"}
    scores = json.loads((out / "scores.json").read_text())
    assert [row["name"] for row in scores["scores"]] == ["colour", "position"]
    assert scores["data"] == "synthetic:easy" and scores["pairs"]["test"]["pairs"] > 0
    probe, config = load_probe(out)
    assert config["classes"]["colour"][0] == "red" and probe.continuous == {"position": 2}
    assert not probe.training


@pytest.mark.parametrize(
    ("flags", "refusal"),
    [
        (["--data", "davis:/x"], "a probe needs the objects' ground truth"),
        (["--properties", "shape,weight"], "no property 'weight'; the properties are shape, colour"),
        (["--steps", "0"], "steps must be >= 1, got 0"),
        (["--min-iou", "1"], r"min_iou must be in \[0, 1\), got 1.0"),
    ],
    ids=["not-synthetic", "unknown-property", "no-steps", "min-iou"],
)
def test_the_command_refuses_what_it_cannot_do_before_running_the_model(tmp_path, capsys, flags, refusal):
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(tmp_path / "absent"), "--out", str(tmp_path / "probe"), *flags])
    assert exited.value.code == 2
    assert re.search(refusal, capsys.readouterr().err)


def test_a_head_is_never_saved_over_a_model_folder(tmp_path, capsys):
    """The model's own config.json and weights would be replaced: the probe and dynamics commands refuse."""
    model = save_tiny_model(tmp_path / "model")
    before = {name: (model / name).read_bytes() for name in (CONFIG_FILE, WEIGHTS_FILE)}
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--out", str(model), "--data", "synthetic:easy"])
    assert "holds a config.json that is no head's" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no head's"):
        fit_dynamics([], model, DynamicsConfig())
    assert {name: (model / name).read_bytes() for name in before} == before
    check_head_folder(tmp_path / "new", "property_probe")  # a missing folder is fine


def test_a_head_is_never_saved_over_another_kind_of_head(tmp_path):
    probe = PropertyProbe(4, categorical={"shape": 2})
    save_head(probe, tmp_path / "probe", {})
    save_head(probe, tmp_path / "probe", {})  # the same kind again: a run done again
    with pytest.raises(
        ValueError, match=r"probe holds a head of kind 'property_probe': saving one of kind 'slotformer' there"
    ):
        fit_dynamics([], tmp_path / "probe", DynamicsConfig())
    assert json.loads((tmp_path / "probe" / CONFIG_FILE).read_text())["head"] == "property_probe"


def test_a_model_without_matched_slots_says_so(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    argv = ["--model", str(model), "--out", str(tmp_path / "probe"), "--data", "synthetic:easy", "--no-progress"]
    assert main([*argv, "--train-videos", "1", "--test-videos", "1", "--min-iou", "0.99"]) == 2
    assert "no slot was matched to an object" in capsys.readouterr().err
