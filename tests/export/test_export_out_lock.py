"""Two exports into one ``--out``: the one that comes second is refused while the first holds the folder's lock,
and leaves the first's staging folder alone (it used to delete it as a killed export's leftover, and the first
then failed on a file that had vanished). A killed export's lock is free, so its leftovers are still cleaned."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from service.backends.manifest import MANIFEST_FILE, read_manifest
from training.export import ExportOptions, export_model
from training.export.__main__ import main as export_main
from training.export.export_lock import LOCK_FILE, OutFolderBusy, out_lock
from training.export.out_folder import STAGING_PREFIX

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

QUICK = ExportOptions(parity_frames=1, batch_sizes=())

#: A stand-in for a running export in another process: it takes the lock of ``argv[1]`` the way exports do
#: (flock on the lock file), says so, and holds it until it is killed.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], sys.argv[2]), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("source"))


def running_export(out: Path) -> Path:
    """The staging folder of an export that is still writing to ``out``."""
    staging = out / f"{STAGING_PREFIX}running"
    staging.mkdir(parents=True)
    (staging / "first_step.onnx").write_bytes(b"a graph being written")
    return staging


def test_an_export_into_a_folder_another_export_is_writing_is_refused_and_leaves_it_alone(source, tmp_path):
    out = tmp_path / "out"
    staging = running_export(out)
    with out_lock(out), pytest.raises(OutFolderBusy, match=rf"another export is writing to --out {out}"):
        export_model(source, out, QUICK)
    assert (staging / "first_step.onnx").read_bytes() == b"a graph being written", "the running export's files"
    assert sorted(path.name for path in out.iterdir()) == [staging.name], "nothing written, the lock file removed"


def test_the_command_names_the_busy_folder_and_exits_2(source, tmp_path, capsys):
    out = tmp_path / "out"
    staging = running_export(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), LOCK_FILE], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert export_main(["--model", str(source), "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith(f"export: another export is writing to --out {out}")
        assert staging.is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed, its lock is free: its staging folder and lock file are leftovers the next export cleans up.
    export_model(source, out, QUICK)
    assert read_manifest(out, verify_graphs=True).source.version
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")], "leftovers and lock file gone"


def test_an_export_takes_the_folder_again_once_the_lock_is_released(source, tmp_path):
    out = tmp_path / "out"
    with out_lock(out.parent):  # another folder's lock is no concern of this one
        export_model(source, out, QUICK)
    export_model(source, out, QUICK)  # the earlier export's lock went with it
    assert (out / MANIFEST_FILE).is_file() and not (out / LOCK_FILE).exists()
