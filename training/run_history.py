"""What a run folder records of how its training went, read for the run's model card: the steps it trained, the
wall time it took to reach a step, its newest checkpoint, where it trained (``environment.json``) and how many
files it trained on (``data_files.json``). A record that cannot be read is said with a note on stderr, and the
card then says it was not recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.model_files import WEIGHTS_FILE
from training.best import read_selection
from training.checkpoint import checkpoint_step, list_checkpoints
from training.cli_checks import print_note
from training.config import TrainConfig
from training.data_files import read_data_files, training_file_count
from training.environment import read_environment
from training.logging_sinks import METRICS_FILE, parsed_line
from training.run_folder import FINAL_MODEL_DIR, TRAIN_CONFIG_FILE


def run_environment(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``environment.json`` segments; none (said as not recorded) for a run that predates the file or
    whose file cannot be read, with a note."""
    try:
        return read_environment(run_dir)
    except (ValueError, OSError) as error:
        print_note(f"note: {error}; the card says where the run trained was not recorded")
        return []


def wall_time_s(run_dir: Path, model_dir: Path, step: int, recorded: float | None = None) -> float:
    """Seconds the run trained to reach ``step``, the published weights' step.

    ``recorded`` when the run recorded them with its best model (``selection.json``'s ``elapsed_s``); 0 for the
    starting weights of step 0 (an ``--init-from`` model selected before any step). Else read from the
    ``elapsed_s`` of the training lines of ``metrics.jsonl``, which sum the invocations of a resumed run and leave
    out the pauses between them: that of ``step``'s own line, or for a step without one (an evaluation between two
    logged steps) the straight line between the logged steps around it, from step 0 at 0 s (past the last logged
    step, its pace so far continued). Runs logged before ``elapsed_s`` existed fall back to file times: from
    ``train_config.json`` (written when the run started) to the published weights, which counts such pauses.
    """
    if step == 0:
        return 0.0
    if recorded is not None:
        return recorded
    logged = [
        (record["step"], float(record["elapsed_s"])) for record in _train_records(run_dir) if "elapsed_s" in record
    ]
    if logged:
        return _elapsed_at(logged, step)
    return (model_dir / WEIGHTS_FILE).stat().st_mtime - (run_dir / TRAIN_CONFIG_FILE).stat().st_mtime


def _elapsed_at(logged: list[tuple[int, float]], step: int) -> float:
    """The seconds at ``step`` (at least 1) from ``logged`` (step, elapsed seconds) pairs: the pair of ``step``, or
    the straight line between the pairs around it (step 0 at 0 s before the first), or past the last pair the
    pace up to it continued."""
    points = [(0, 0.0), *sorted(logged)]
    before = max((point for point in points if point[0] <= step), key=lambda point: point[0])
    after = [point for point in points if point[0] > step]
    if before[0] == step:
        return before[1]
    if after:
        (start, start_s), (end, end_s) = before, after[0]
        return start_s + (end_s - start_s) * (step - start) / (end - start)
    return before[1] * step / before[0]  # before[0] > 0: a logged step, as logged is not empty


def _train_records(run_dir: Path) -> list[dict[str, Any]]:
    """The training lines of the run's ``metrics.jsonl``, in order (none without the file); the cut-off last line
    of a killed run is skipped."""
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        return []
    records = (parsed_line(line) for line in metrics.read_text().splitlines())
    return [record for record in records if record and record.get("kind") == "train"]


def steps_done(run_dir: Path, config: TrainConfig) -> int:
    """``config.steps`` for a finished run, else the last step the run trained: the newest of its newest
    checkpoint, its best model's step and its last training line in ``metrics.jsonl`` (0 without any)."""
    if (run_dir / FINAL_MODEL_DIR / WEIGHTS_FILE).is_file():
        return config.steps
    selection = read_selection(run_dir)
    steps = [newest_checkpoint_step(run_dir), selection.step if selection else 0]
    return max(steps + [int(record["step"]) for record in _train_records(run_dir)])


def newest_checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest checkpoint, where ``--resume`` continues it (0 without one)."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoint_step(checkpoints[-1]) if checkpoints else 0


def recorded_files(run_dir: Path) -> int | None:
    """How many files the run trained on, from its ``data_files.json``; None for a run without one (or one that
    cannot be read, with a note: the card then gives no count)."""
    try:
        record = read_data_files(run_dir)
    except (ValueError, OSError) as error:
        print_note(f"note: {error}; the card gives no count of the run's data files")
        return None
    return None if record is None else training_file_count(record)
