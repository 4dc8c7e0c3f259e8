"""What a run killed at an awkward moment leaves behind does not trip the next start: a model folder half written,
a best model to warm-start from, the metric lines of an attempt that never reached a checkpoint."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from training.configs import get_config
from training.loop import fit
from training.run import main


def _tiny(steps: int, **changes: object) -> object:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    return dataclasses.replace(config, steps=steps, data=data, eval_every=steps, checkpoint_every=steps, **changes)


def test_a_resume_of_a_run_killed_while_saving_its_model_saves_it_instead_of_calling_it_finished(
    tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert main(["--config", "tiny", "--out", str(run), "--steps", "2", "--no-progress"]) == 0
    (run / "model" / "model.safetensors").unlink()  # killed after config.json, before the weights
    capsys.readouterr()
    assert main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "has finished all" not in capsys.readouterr().out
    assert (run / "model" / "model.safetensors").is_file()


def test_a_restart_warm_started_from_the_killed_attempts_best_model_reads_it_before_clearing_it(
    tmp_path: Path,
) -> None:
    """The run folder's ``best/`` of an attempt killed before its first checkpoint is cleared when the run starts
    again (it may be of another configuration); a warm start from it is read first. And the attempt's step-0
    evaluation line is not kept beside the new one."""
    source = fit(_tiny(2), tmp_path / "source", progress=False)
    assert source.model_dir is not None
    run = tmp_path / "run"
    attempt = fit(_tiny(2, init_from=str(source.model_dir)), run, progress=False)  # evaluates step 0 and 2
    assert attempt.best_model_dir is not None and (run / "best").is_dir()
    for leftover in ("checkpoints", "model"):  # as if killed before its first checkpoint
        shutil.rmtree(run / leftover)

    again = fit(_tiny(2, init_from=str(run / "best")), run, progress=False, resume=True)

    assert again.model_dir is not None and (again.model_dir / "model.safetensors").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    step_zero = [record for record in records if record["step"] == 0 and record["kind"] == "eval"]
    assert len(step_zero) == 1, records
