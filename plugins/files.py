"""Writing files so that readers only ever see complete ones, with ordinary permissions, that survive a crash.

A file is written under a temporary name in its final folder, flushed to disk, given the permissions a plain
``open`` would give under the process umask (temporary files are created 0600, which a rename keeps, so other
users of a shared machine could not read a model), and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, which would
    race with threads creating files); 0o022 where ``/proc`` does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


class NoHomeFolder(argparse.ArgumentTypeError, ValueError):
    """A ``~user`` path naming no user: a usage error as a flag's value, a ``ValueError`` elsewhere (a variable)."""


def user_path(text: str) -> Path:
    """An ``argparse`` type for path flags: ``text`` as a path, a leading ``~`` expanded as a shell expands it (a
    shell leaves ``--flag=~/x`` and quoted paths alone, which would otherwise name a folder called ``~``).

    Raises:
        NoHomeFolder: ``~user`` names no user (or no home folder can be found).
    """
    try:
        return Path(text).expanduser()
    except RuntimeError as error:  # "Could not determine home directory."
        raise NoHomeFolder(f"{text}: {error}") from None


def user_path_text(text: str) -> str:
    """:func:`user_path` for flags kept as strings (recorded in a run's configuration, say)."""
    return str(user_path(text))


def check_writable(folder: Path) -> None:
    """Create and delete a file of a name of its own in ``folder`` (so processes checking one folder at once do
    not trip over each other): permissions, read-only file systems and ``/proc`` or ``/sys`` all show.

    Raises:
        OSError: no file can be made there.
    """
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
        pass


def output_folder_problem(folder: Path) -> str | None:
    """Why files could not be written in ``folder`` once it is made with its parents: the nearest of them that
    exists is a file, or takes no new file (:func:`check_writable`); ``None`` when they could."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        check_writable(existing)
    except OSError as error:
        return f"cannot write in {existing} ({error.strerror or error})"
    return None


def sync_file(path: Path) -> None:
    """Flush ``path``'s contents to the disk (so a crash after a later rename cannot leave it empty)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sync_folder(path: Path) -> None:
    """Flush ``path``'s entries (a rename into it) to the disk, where the platform allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some platforms
        return
    try:
        os.fsync(descriptor)
    except OSError:  # and some file systems refuse to sync them
        pass
    finally:
        os.close(descriptor)


def lock_or_close(descriptor: int) -> bool:
    """Take an exclusive ``flock`` of the open file ``descriptor`` without waiting; close ``descriptor`` unless it
    is taken.

    Returns:
        Whether it was taken; ``False`` when another open file holds the lock.

    Raises:
        OSError: the file system cannot lock it (``descriptor`` is closed too).
    """
    import fcntl  # POSIX only; the client, which uses this module's other functions, also runs on Windows

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    except BaseException:
        os.close(descriptor)
        raise
    return True


TEMPORARY_NAME_BYTES = 200
"""The most bytes of a file's name that the name of its temporary twin repeats (:func:`temporary_prefix`): file
systems allow 255, and the twin adds a dot, a random part and a suffix."""


def temporary_prefix(name: str) -> str:
    """``.{name}.``, the prefix of a hidden temporary file or folder that becomes ``name``, with ``name`` cut to
    :data:`TEMPORARY_NAME_BYTES` bytes so that the temporary name stays within the file system's limit wherever
    ``name`` itself does."""
    while len(os.fsencode(name)) > TEMPORARY_NAME_BYTES:  # whole characters: a cut one is no valid name everywhere
        name = name[:-1]
    return f".{name}."


def write_atomically(
    path: Path, write: Callable[[Path], object], mode: int | None = None, through_links: bool = False
) -> None:
    """Make ``path`` by ``write(temporary)`` and a rename: readers see the old file or the complete new one.

    Args:
        path: the file to make; its folder must exist.
        write: writes the whole content to the path it is given.
        mode: the file's permissions; ``None``: what a plain ``open`` gives under the process umask.
        through_links: a symbolic link at ``path`` is written through, as an ``open`` would (its target gets the
            new content, the link stays): for a user's output files. Otherwise the link itself is replaced, which
            keeps a model folder's linked files (a shared cache's) and a shared engine cache from writing
            elsewhere.
    """
    if through_links and path.is_symlink():
        path = path.resolve()  # the rename below would replace the link itself
    prefix = temporary_prefix(path.name)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=prefix, suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        write(temporary)
        sync_file(temporary)
        os.chmod(temporary, 0o666 & ~umask() if mode is None else mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    sync_folder(path.parent)
