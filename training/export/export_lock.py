"""The lock an export holds on its ``--out`` folder for its whole run, so that two exports never write one folder.

The lock is ``fcntl.flock`` on the file :data:`LOCK_FILE` inside ``--out``. The kernel releases it when the
process ends, however it ends, so a folder whose lock is free has no export running in it: a hidden staging
folder found there is a killed export's leftover. The holder removes the file when it is done (a killed one
cannot: the file then stays, unlocked, and the next export takes it); whoever opened the file just before that
locks a file no longer in the folder, which :func:`out_lock` notices and then locks the one there now.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from plugins.files import lock_or_close

#: The lock file an export holds inside ``--out``.
LOCK_FILE = ".export.lock"


class OutFolderBusy(ValueError):
    """Another export holds the lock of the ``--out`` folder; the message names it and what to do."""


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold the export lock of the existing folder ``out`` for the block, then remove the lock file.

    Raises:
        OutFolderBusy: another export is writing to ``out`` (refused at once, never waited for).
        OSError: the lock file cannot be created or locked in ``out`` (a folder that cannot be written).
    """
    path = out / LOCK_FILE
    descriptor = _acquire(path, out)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # removed while still held: see the module docstring
            path.unlink()
        os.close(descriptor)


def _acquire(path: Path, out: Path) -> int:
    """An open descriptor of ``path``, exclusively locked and still the file at ``path``."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not lock_or_close(descriptor):
            raise OutFolderBusy(
                f"another export is writing to --out {out} (it holds {path}): wait for it to finish, or give "
                "another folder"
            )
        if _same_file(path, descriptor):
            return descriptor
        os.close(descriptor)  # its holder removed it between our open and our lock: lock the file there now


def _same_file(path: Path, descriptor: int) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
