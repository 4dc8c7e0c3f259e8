"""``python -m service``: serve a slot model over gRPC until SIGTERM (see ``--help``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from plugins.extras import require_extra


def main(argv: list[str] | None = None) -> int:
    """Parse the configuration, serve, and return the exit status (2: bad configuration).

    Warnings about the configuration's sources (a misspelt ``SLOTSTREAM_*`` variable) are logged once logging is
    configured, in the configured format; when the configuration is refused (or ``--help`` is asked for), they are
    printed as plain text: before the refusal for a value the configuration refuses, after argparse's own message
    for a flag argparse refuses (it prints that before the notes can be).

    The server's modules are imported here, after checking that the ``server`` extra is installed, so a client-only
    install gets a one-line refusal (exit status 2) rather than a traceback from the ``slotstream`` script.
    """
    require_extra("server", "slotstream")
    # gRPC's own C-core log lines (a failed TLS handshake, a port scan) are neither JSON nor rate-limited nor
    # filtered by --log-level, and name no client: only its errors reach stderr unless GRPC_VERBOSITY says more.
    # Read when gRPC is first imported, so set before the imports below.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from plugins.registry import RegistryError
    from service.config import ConfigError, ServiceConfig
    from service.engine import BackendUnavailable
    from service.logs import configure_logging
    from service.ports import ListenError
    from service.process import serve
    from service.tls import TlsFilesError

    notes: list[str] = []
    try:
        config = ServiceConfig.from_sources(argv, notes=notes)
        config.check_files()
        config.bearer_tokens()
        config.admin_tokens()
    except ConfigError as error:
        _print_notes(notes)
        print(f"slotstream: {error}", file=sys.stderr)
        return 2
    except SystemExit:  # --help, or a flag argparse refused (it has printed why)
        _print_notes(notes)
        raise
    configure_logging(config.log_level, config.log_format)
    for note in notes:
        logging.getLogger("service.config").warning(note)
    try:
        asyncio.run(serve(config))
    except TlsFilesError as error:  # they loaded when checked above, and changed before the server listened
        print(f"slotstream: cannot use the TLS files: {error}", file=sys.stderr)
        return 2
    except (BackendUnavailable, FileNotFoundError, ValueError) as error:
        print(f"slotstream: cannot load the model: {error}", file=sys.stderr)
        return 2
    except RegistryError as error:  # its message names the model's config.json and what to install or unblock
        print(f"slotstream: cannot load the model: {error}", file=sys.stderr)
        return 2
    except ListenError as error:
        print(f"slotstream: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"slotstream: {error}", file=sys.stderr)
        return 1
    return 0


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"slotstream: warning: {note}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
