"""One training process per run folder: :class:`RunFolderLock`.

Two processes training in one folder (a run started twice, a resume while the run still trains, a pod restarted
while the old one still drains) mix their results silently: one's ``train_config.json`` beside the other's
checkpoints, ``metrics.jsonl`` rows written twice, a checkpoint's staging folder deleted under the process writing
it. The main process of a run therefore holds an exclusive ``flock`` on the folder itself (no file is added to it)
for as long as it trains there; another process that finds it held stops before it reads or writes anything of the
run. The lock is advisory and ends with the process that holds it (a killed run leaves nothing to clean up). Where
the file system cannot lock a folder (some network file systems refuse a lock on a folder opened to read), runs
there are not guarded: the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from types import TracebackType

from plugins.files import lock_or_close

_HELD: set[int] = set()
"""The descriptors of the run-folder locks this process holds: a forked child (a data-loading worker) closes its
copies (:func:`_forget_in_child`), which would otherwise keep the lock held after this process let it go."""


@functools.cache
def _forget_in_forked_children() -> None:
    """Have every forked child run :func:`_forget_in_child` (registered once, on the first lock taken)."""
    os.register_at_fork(after_in_child=_forget_in_child)


def _forget_in_child() -> None:
    """In a forked child: close the copies of the parent's lock descriptors (the parent keeps its lock)."""
    for fd in _HELD:
        with contextlib.suppress(OSError):  # already closed by the child (a worker closing inherited descriptors)
            os.close(fd)
    _HELD.clear()


class RunFolderInUse(FileExistsError):
    """Another process holds the run folder (:class:`RunFolderLock`)."""


class RunFolderLock:
    """The exclusive lock of a run folder, taken by :meth:`take` and held until :meth:`release` (or the end of a
    ``with`` block). Taking it again while held does nothing.

    Args:
        run_dir: the run folder (it need not exist until :meth:`take`).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def take(self) -> None:
        """Take the lock of the folder, which must exist; on a file system that cannot lock it, go on without.

        Raises:
            RunFolderInUse: another process holds it; the message says what to do.
        """
        if self._fd is not None:
            return
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            taken = lock_or_close(fd)
        except OSError:  # no locks on this file system (EBADF, ENOLCK, EOPNOTSUPP): unguarded, as before locks
            return
        if not taken:
            raise RunFolderInUse(
                f"{self.run_dir} is in use by another training process (a run started twice, or resumed while it "
                "still trains): wait for that process to end, stop it, or choose another --out"
            )
        _forget_in_forked_children()
        _HELD.add(fd)
        self._fd = fd

    def take_if_present(self) -> None:
        """:meth:`take` the lock when the folder exists (a new run's folder is locked once it is made)."""
        if self.run_dir.is_dir():
            self.take()

    def release(self) -> None:
        """Let the lock go (closing the folder ends it). Does nothing when it is not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            _HELD.discard(fd)
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


__all__ = ["RunFolderInUse", "RunFolderLock"]
