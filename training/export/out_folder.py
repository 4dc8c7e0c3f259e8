"""The output folder of an export: what may be replaced there, its lock, and cleaning up after a failed or killed
export.

An export assembles its files in a staging folder inside ``--out`` (:data:`STAGING_PREFIX`) and moves them into
place once every check passed (:mod:`training.export.exporter`); while it runs it holds the folder's lock
(:mod:`training.export.export_lock`). These functions decide whether ``--out`` may be written at all
(:func:`check_out_dir`), take the lock (:func:`locked_out`) and remove what a failed or killed export left behind.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE, parse_json
from service.backends.manifest import MANIFEST_FILE, MANIFEST_FORMAT, Manifest, ManifestError
from training.export.export_lock import LOCK_FILE, out_lock

#: Name prefix of the hidden folder an export is assembled in before its files are moved into place.
STAGING_PREFIX = ".staging-"


@contextlib.contextmanager
def locked_out(out: Path) -> Iterator[None]:
    """Create ``out`` where missing and hold its export lock (:func:`~training.export.export_lock.out_lock`) for
    the block.

    Raises:
        OSError: ``out`` cannot be created or written (named as the flag, not as the lock file the user never
            named).
        OutFolderBusy: another export is writing to ``out``.
    """
    held = contextlib.ExitStack()
    try:
        out.mkdir(parents=True, exist_ok=True)
        held.enter_context(out_lock(out))
    except OSError as error:
        raise OSError(f"--out {out} cannot be written to: {error.strerror or error}") from error
    with held:
        yield


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first, as :func:`missing_folders` lists them) that is empty."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty (something else wrote there), or gone: leave it
            folder.rmdir()


def check_out_dir(out: Path, source: Path, version: str, replace: bool) -> None:
    """``out`` must be new, empty, an earlier export (it holds a readable export manifest) or the source model
    directory itself; anything else (another model's directory, a home folder, a folder whose ``manifest.json``
    belongs to something else) would have its files replaced or mixed in. An earlier export of another model
    (another source version than ``version``) is replaced only with ``replace``: exported in place, that folder
    holds the model itself. Staging folders and the lock file (an export's own, running or killed) are not counted
    as files of the folder. Only looks: run before the lock is taken (a refused export touches nothing) and again
    while it is held.

    Raises:
        ValueError: ``out`` is a file, a folder of other files, or an export of another model without ``replace``.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the export")
    if not out.is_dir():
        return
    others = [entry for entry in out.iterdir() if not _is_export_own(entry)]
    earlier = export_version(out)
    if earlier is not None and earlier != version and out.resolve() != source.resolve() and not replace:
        raise ValueError(
            f"--out {out} holds an export of another model (version {earlier}; this one is {version}) with that "
            f"model's {CONFIG_FILE} and {WEIGHTS_FILE}, which may be its only copy if it was exported in place: "
            "pass --replace to replace it, or give a new folder"
        )
    if out.resolve() == source.resolve() or earlier is not None or not others:
        return
    raise ValueError(
        f"--out {out} already holds files and is not an export directory (no readable export {MANIFEST_FILE}); "
        "give a new or empty folder, an earlier export to replace, or the model directory itself"
    )


def _is_export_own(entry: Path) -> bool:
    """Whether ``entry`` of an output folder is an export's own working file: a staging folder or the lock file."""
    return entry.name.startswith(STAGING_PREFIX) or entry.name == LOCK_FILE


def remove_leftovers(out: Path) -> None:
    """Remove the staging folders in ``out``: a killed export's, which never reached its cleanup. Only while
    holding the lock of ``out``, which a running export holds for its whole run, so none is a running export's."""
    for leftover in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, ``path`` first (what ``mkdir(parents=True)`` creates)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def export_version(directory: Path) -> str | None:
    """The source version of the export in ``directory``, when it holds a manifest this exporter wrote (not just
    any file of that name); else ``None``. A manifest the reader refuses after an edit by hand (an ``input.layout``
    changed, a shape) still counts when it is of this format with its ``graphs`` and ``source.version``: its
    refusal says to re-run the export, into that folder."""
    try:
        text = (directory / MANIFEST_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return Manifest.from_json(text).source.version
    except ManifestError:
        pass
    try:
        raw = parse_json(text)
    except ValueError:  # not JSON, or nested too deep to read safely
        return None
    if not isinstance(raw, dict) or raw.get("format_version") != MANIFEST_FORMAT:
        return None
    if not isinstance(raw.get("graphs"), dict):
        return None
    source = raw.get("source")
    version = source.get("version") if isinstance(source, dict) else None
    return version if isinstance(version, str) and version else None
