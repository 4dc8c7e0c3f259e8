"""One training process per run folder: a second one (a run started twice, a resume while the run still trains) is
refused before it reads or writes anything of the run, and the folder is free again once the first ends."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from training.configs import get_config
from training.loop import fit
from training.run import main
from training.run_lock import RunFolderInUse, RunFolderLock


def _tiny(steps: int = 2):
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    return dataclasses.replace(config, steps=steps, data=data, checkpoint_every=1)


def _contents(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")
    }


def test_a_folder_is_held_by_one_lock_at_a_time_until_released(tmp_path: Path) -> None:
    with RunFolderLock(tmp_path) as first:
        first.take()
        first.take()  # again: nothing changes
        second = RunFolderLock(tmp_path)
        with pytest.raises(RunFolderInUse, match="in use by another training process"):
            second.take()
        assert first.held and not second.held
    second.take()  # free once the first let it go
    assert second.held
    second.release()
    assert not second.held


def test_a_missing_folder_is_locked_only_once_made(tmp_path: Path) -> None:
    lock = RunFolderLock(tmp_path / "new")
    lock.take_if_present()
    assert not lock.held and not (tmp_path / "new").exists()


def test_a_run_resumed_while_it_still_trains_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fit(_tiny(steps=2), run_dir, stop_after=1, progress=False)  # a run with a checkpoint of step 1
    before = _contents(run_dir)
    with RunFolderLock(run_dir) as still_training:
        still_training.take()
        with pytest.raises(RunFolderInUse):
            fit(_tiny(steps=2), run_dir, resume=True, progress=False)
        assert _contents(run_dir) == before
    result = fit(_tiny(steps=2), run_dir, resume=True, progress=False)  # once it ended, the resume trains
    assert result.step == 2 and result.started_step == 1


def test_a_run_started_twice_in_one_folder_is_refused_by_the_command(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # made by the first run, which has not written anything yet
    with RunFolderLock(run_dir) as first:
        first.take()
        code = main(["--config", "tiny", "--steps", "1", "--out", str(run_dir), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"error: {run_dir} is in use by another training process" in error and "Traceback" not in error
    assert os.listdir(run_dir) == []


def test_two_new_runs_started_together_in_a_new_folder_train_one_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """The folder did not exist when the second run looked; the first made it and locked it while the second read
    its data: the second is refused when it comes to make the folder, before it writes anything."""
    import training.loop

    run_dir = tmp_path / "run"
    first = RunFolderLock(run_dir)
    read_clips = training.loop.train_clips

    def clips_read_while_the_first_run_starts(config):
        run_dir.mkdir()
        first.take()
        return read_clips(config)

    monkeypatch.setattr(training.loop, "train_clips", clips_read_while_the_first_run_starts)
    try:
        with pytest.raises(RunFolderInUse):
            fit(_tiny(), run_dir, progress=False)
        assert os.listdir(run_dir) == []
    finally:
        first.release()


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_lets_it_go(tmp_path: Path) -> None:
    """A data-loading worker forked while the run trains (and alive after it stopped, held by a traceback kept in a
    notebook) must not keep the folder locked: the flock belongs to the descriptor the child inherits."""
    lock = RunFolderLock(tmp_path)
    lock.take()
    started_read, started_write = os.pipe()
    stop_read, stop_write = os.pipe()
    child = os.fork()
    if child == 0:  # the child runs (its fork handlers done) until the parent has let the lock go and tried it
        os.write(started_write, b"x")
        os.read(stop_read, 1)
        os._exit(0)
    try:
        os.read(started_read, 1)
        lock.release()
        again = RunFolderLock(tmp_path)
        again.take()  # refused while the child held a copy of the lock's descriptor
        again.release()
    finally:
        os.write(stop_write, b"x")
        os.waitpid(child, 0)
        for fd in (started_read, started_write, stop_read, stop_write):
            os.close(fd)
