"""How tests start ``torchrun`` jobs: two gloo processes on a port torchrun picks, one thread each, with torchrun's
scratch files kept in the test's own folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: ``torchrun --standalone --nproc-per-node 2`` (``--standalone`` picks a free port), as this interpreter runs it.
TORCHRUN_TWO_PROCESSES = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun_env(scratch: Path) -> dict[str, str]:
    """The environment of a ``torchrun`` job a test starts: this one's, with one thread per process, the repository
    and its tests folder on ``PYTHONPATH`` (for a test file run as the job's script, which imports this module too)
    and ``TMPDIR`` inside ``scratch`` (created here).

    torchrun writes a ``torchelastic_*`` folder per job under ``TMPDIR`` and never removes it; under the test's
    folder, pytest's clean-up of old test folders removes it instead."""
    temp = scratch / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, "TMPDIR": str(temp)}
