"""A model card agrees with the run it publishes and with itself: no file of an earlier card stays in ``--out``,
the synthetic-data caveat only for models trained on synthetic data, the steps a killed run trained, the config
file a ``--config=FILE`` command named, and the wall time of weights between logged steps."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from training.best import read_selection
from training.card_text import _experiment_source
from training.checkpoint import list_checkpoints
from training.config import TrainConfig
from training.configs import get_config
from training.datasets.export import write_labelled_mp4, write_sequence
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.model_card import CARD_FILES, RECALL_CHART_FILE
from training.model_card import main as card_main
from training.run_history import wall_time_s


def _tiny(steps: int = 2, spec: str = "synthetic:easy", **top: object) -> TrainConfig:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, spec=spec, val_videos=1, val_frames=2, num_workers=0)
    settings: dict[str, object] = {"eval_every": 2, "checkpoint_every": 2, "log_every": 1, **top}
    return dataclasses.replace(config, steps=steps, data=data, **settings)  # type: ignore[arg-type]


def _labelled_videos(folder: Path) -> Path:
    """A ``videos:`` folder of two labelled recordings (real video files, not ``synthetic:`` data)."""
    for seed in (7, 8):
        video = generate_video("easy", seed, 6, (32, 32))
        write_labelled_mp4(folder, f"clip{seed}", video.frames, video.masks)
    return folder


def _davis(folder: Path) -> Path:
    video = generate_video("medium", 3, 4, (32, 32))
    write_sequence(folder, "seq", video)
    return folder


def test_a_card_published_over_another_leaves_no_file_of_the_earlier_card(tmp_path: Path) -> None:
    """A synthetic-data card links a recall chart; a card scored on real videos writes none. Published into the
    same --out, the second must not leave the first's chart next to weights it does not describe (the export
    copies every card file it finds)."""
    from training.export.exporter import CARD_FILES as EXPORTED_CARD_FILES

    assert set(CARD_FILES) == set(EXPORTED_CARD_FILES)
    fit(_tiny(), tmp_path / "run", progress=False)
    out = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert (out / RECALL_CHART_FILE).is_file()

    labelled = _labelled_videos(tmp_path / "labelled")
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(out), "--data", f"videos:{labelled}"]) == 0
    assert RECALL_CHART_FILE not in (out / "MODEL_CARD.md").read_text()
    assert not (out / RECALL_CHART_FILE).exists()
    assert {"MODEL_CARD.md", "scores.json", "sample.png", "config.json", "model.safetensors"} == {
        path.name for path in out.iterdir()
    }


def test_the_synthetic_data_caveat_is_for_models_trained_on_synthetic_data_only(tmp_path: Path) -> None:
    davis = _davis(tmp_path / "davis")
    labelled = _labelled_videos(tmp_path / "labelled")
    fit(_tiny(spec=f"videos:{labelled}"), tmp_path / "real", progress=False)
    assert (
        card_main(["--run", str(tmp_path / "real"), "--out", str(tmp_path / "real-card"), "--davis", str(davis)]) == 0
    )
    real_card = (tmp_path / "real-card" / "MODEL_CARD.md").read_text()
    assert "DAVIS" in real_card
    assert "synthetic shapes" not in real_card

    fit(_tiny(), tmp_path / "synthetic", progress=False)
    args = ["--run", str(tmp_path / "synthetic"), "--out", str(tmp_path / "synthetic-card"), "--davis", str(davis)]
    assert card_main(args) == 0
    synthetic_card = (tmp_path / "synthetic-card" / "MODEL_CARD.md").read_text()
    assert "A model with the `small_cnn` encoder trained on synthetic shapes only" in synthetic_card
    assert "A CNN" not in synthetic_card


def test_a_run_killed_after_an_evaluation_past_its_checkpoint_says_how_far_it_trained(tmp_path: Path) -> None:
    """A kill after the evaluation of step 6 but before a checkpoint of it: the run trained 6 steps, its best model
    may be of step 6, and a resume continues from the checkpoint of step 4."""
    run = tmp_path / "run"
    fit(_tiny(steps=8, checkpoint_every=4), run, progress=False, stop_after=6)
    newest = list_checkpoints(run)[-1]
    assert newest.name.endswith("6")
    shutil.rmtree(newest)  # as the kill left it: no checkpoint of step 6
    assert card_main(["--run", str(run), "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert "| steps | 6 of the planned 8 (stopped early; --resume continues it from its checkpoint of step 4);" in card
    selection = read_selection(run)
    assert selection is not None and f"the published weights are those of step {selection.step}," in card

    for checkpoint in list_checkpoints(run):  # as a kill before the first checkpoint leaves it
        shutil.rmtree(checkpoint)
    assert card_main(["--run", str(run), "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert (
        "| steps | 6 of the planned 8 (stopped early; it has no checkpoint: --resume starts it again from step 0);"
        in card
    )


def test_the_card_names_a_config_file_however_the_command_gave_it() -> None:
    config = get_config("tiny")
    expected = "`/x/myexp.py` (a config file;"
    for command in (
        "python -m training.run --config=/x/myexp.py --out runs/a",
        "python -m training.run --conf /x/myexp.py --out runs/a",
        "torchrun --nnodes 1 --nproc-per-node 2 -m training.run --config /x/myexp.py --steps 3",
    ):
        assert _experiment_source(config, command).startswith(expected), command
    assert _experiment_source(config, "python -m training.run --config=tiny") == "`training/configs/tiny.py`"
    assert _experiment_source(config, "python -m training.run --steps 3") == "`training/configs/tiny.py`"


def _write_metrics(run: Path, rows: list[tuple[int, float]]) -> None:
    lines = [json.dumps({"step": step, "kind": "train", "loss": 0.1, "elapsed_s": elapsed}) for step, elapsed in rows]
    lines.append(json.dumps({"step": 7, "kind": "eval", "video_mbo": 0.5}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_wall_time_of_weights_between_logged_steps_lies_between_theirs(tmp_path: Path) -> None:
    """Logged every 5 steps, evaluated every 7: the weights of step 7 took longer than step 5's line says."""
    run = tmp_path / "run"
    run.mkdir()
    _write_metrics(run, [(5, 1.0), (10, 2.0)])
    assert wall_time_s(run, run, 7) == 1.4
    assert wall_time_s(run, run, 3) == 0.6  # before the first line: from step 0 at 0 s
    assert wall_time_s(run, run, 10) == 2.0
    assert wall_time_s(run, run, 12) == 2.4  # past the last line (a killed run): its pace continued
    assert wall_time_s(run, run, 7, recorded=1.3) == 1.3  # the run recorded it with its best model


def test_starting_weights_selected_at_step_0_took_no_training(tmp_path: Path) -> None:
    """An --init-from run whose starting weights stay its best: 0 s, not the file times of a run without
    elapsed_s lines."""
    run, model = tmp_path / "run", tmp_path / "run" / "best"
    model.mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    started = (run / "train_config.json").stat().st_mtime
    os.utime(model / "model.safetensors", (started + 5, started + 5))
    assert wall_time_s(run, model, 0) == 0.0
    assert wall_time_s(run, model, 3) == 5.0  # a run from before elapsed_s: file times, as before


def test_the_ceiling_command_a_card_gives_reproduces_its_ceiling_row(tmp_path: Path) -> None:
    """The card names the data, mask size, image size and slot count of its ceiling row, so the command it prints
    runs as printed (``--data`` is required) and scores what the row says."""
    import re
    import shlex

    from training.ceiling import main as ceiling_main

    fit(_tiny(), tmp_path / "run", progress=False)
    labelled = _labelled_videos(tmp_path / "labelled")
    out = tmp_path / "card"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(out), "--data", f"videos:{labelled}"]) == 0
    card = " ".join((out / "MODEL_CARD.md").read_text().split())  # the command may be wrapped over lines
    (command,) = re.findall(r"`(python -m training\.ceiling [^`]*)`", card)
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "training.ceiling"]
    assert ceiling_main([*words[3:], "--json", str(tmp_path / "ceiling.json")]) == 0
    (scored,) = json.loads((tmp_path / "ceiling.json").read_text())["ceilings"].values()
    (row,) = [
        value
        for label, value in json.loads((out / "scores.json").read_text()).items()
        if label.endswith(": the ceiling")
    ]
    assert (scored["video_fg_ari"], scored["image_mbo"]) == (row["video_fg_ari"], row["image_mbo"]), (scored, row)
