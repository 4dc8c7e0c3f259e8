"""``python -m service.demo``: serve in the background, stream a generated clip, write an overlay GIF, stop.

What ``make demo`` runs. Writes ``clip.mp4`` (the input), ``overlay.gif`` (each slot in a stable colour) and
``results.jsonl`` (one line per frame) into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from plugins.cli_help import command_description
from plugins.extras import require_extra
from plugins.files import user_path

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("server", "python -m service.demo")

from service.config import DEFAULT_MODEL_DIR, ConfigError, ServiceConfig
from service.config_sources import ENV_PREFIX, environ_values


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m service.demo", description=command_description(__doc__))
    parser.add_argument(
        "--model-dir",
        type=user_path,
        help="model to serve (default: SLOTSTREAM_MODEL_DIR or SLOTSTREAM_MODEL when set, as for the server, else "
        "the embedded model)",
    )
    parser.add_argument("--out-dir", type=user_path, default=Path("runs/demo"), help="where to write the outputs")
    parser.add_argument("--frames", type=int, default=60, help="frames in the generated clip")
    args = parser.parse_args(argv)
    try:
        if args.model_dir is None:
            args.model_dir = default_model_dir(os.environ)
        ServiceConfig(model_dir=args.model_dir).check_files()
    except ConfigError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2

    from service.bench.spawn import SpawnedServer
    from service.client.__main__ import main as client_main

    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, no permission
        print(f"demo: --out-dir {args.out_dir}: cannot make the folder ({error.strerror})", file=sys.stderr)
        return 2
    clip, overlay, jsonl = args.out_dir / "clip.mp4", args.out_dir / "overlay.gif", args.out_dir / "results.jsonl"
    if client_main(["synth", str(clip), "--frames", str(args.frames)]) != 0:
        return 1
    print(f"starting a server for {args.model_dir} ...", file=sys.stderr)
    # SIGTERM (a supervisor, an IDE's stop button) unwinds like Ctrl-C, so the demo's server is stopped, not orphaned.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with SpawnedServer(args.model_dir, own_settings_only=True) as server:  # the demo's server, whatever is set
            print(f"serving on {server.target}; streaming {clip}", file=sys.stderr)
            code = client_main(
                ["stream", str(clip), "--target", server.target, "--out", str(overlay), "--jsonl", str(jsonl)]
            )
    except KeyboardInterrupt:
        print("interrupted; the demo's server is stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        print(f"server stopped; the demo failed (exit status {code}, the client's message is above)", file=sys.stderr)
        return code
    print(f"server stopped. Overlay: {overlay}  per-frame results: {jsonl}", file=sys.stderr)
    return code


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End the demo as a SIGTERM's default would (status 143), unwinding so that its server is stopped first."""
    del signum, frame  # Unused.
    raise SystemExit(128 + signal.SIGTERM)


def default_model_dir(environ: Mapping[str, str]) -> Path:
    """The model the server serves by ``environ`` when no ``--model-dir`` is given: ``SLOTSTREAM_MODEL_DIR`` or its
    other spelling ``SLOTSTREAM_MODEL``, read by the server's own reader
    (:func:`~service.config_sources.environ_values`), else the embedded model (:data:`DEFAULT_MODEL_DIR`).

    Only the variables that set the model are read: the demo's server ignores the others (it starts without them),
    so a bad value of another setting does not stop the demo.

    Raises:
        ConfigError: the variables that set the model name different folders (naming both).
    """
    chosen = environ_values(_model_variables(environ), notes=[])
    return Path(chosen.get("model_dir") or DEFAULT_MODEL_DIR)


def _model_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``SLOTSTREAM_*`` variables of ``environ`` that the server's reader takes as its model folder."""
    found = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        try:
            sets = environ_values({key: raw}, notes=[])
        except ConfigError:  # a value that does not convert: another setting's (any text is a folder's path)
            continue
        if "model_dir" in sets:
            found[key] = raw
    return found


if __name__ == "__main__":
    sys.exit(main())
