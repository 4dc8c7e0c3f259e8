"""``python -m service.bench``: ``--local`` benchmarks the engines in-process (:mod:`service.bench.local`);
``--target`` and ``--suite`` load a server over gRPC (:mod:`service.bench.load`); ``--agreement`` compares two
backends' answers to the same streams (:mod:`service.bench.agreement`); ``--soak`` opens and closes streams many
times and reports what the server keeps (:mod:`service.bench.soak`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from plugins.extras import require_extra

COMMAND = "python -m service.bench"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark the flags select; returns the exit status.

    Every benchmark needs the ``server`` extra (they run engines or servers, or share their code): without it,
    exit status 2 and a one-line message naming it (:func:`plugins.extras.require_extra`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "--agreement" in args:
        require_extra("server", COMMAND)
        from service.bench.agreement import main as agreement_main

        return agreement_main(args)
    if "--soak" in args:
        require_extra("server", COMMAND)
        from service.bench.soak import main as soak_main

        return soak_main(args)
    if "--local" in args:
        require_extra("server", COMMAND)
        from service.bench.local import main as local_main

        return local_main(args)
    if "--target" in args or "--suite" in args or any(a.startswith("--target=") for a in args):
        require_extra("server", COMMAND)
        from service.bench.load import main as load_main

        return load_main(args)
    usage = (
        "usage: python -m service.bench (--target HOST:PORT | --suite | --local | --agreement | --soak) ...\n\n"
        "  --target HOST:PORT  load a running server over gRPC (streams, frames/s, latency)\n"
        "  --suite             start servers and measure the README's load figures\n"
        "  --local             time the engines in-process (first_step/step latency, backends side by side)\n"
        "  --agreement         serve the same streams with two backends and compare the answers\n"
        "  --soak              open and close streams many times; report what the server keeps (streams, memory)\n\n"
        "add --help after one of them for its options (after its value for --target: --target HOST:PORT --help)"
    )
    if "-h" in args or "--help" in args:
        print(usage)
        return 0
    print(f"python -m service.bench: choose a benchmark\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    sys.exit(exit_status_of(main, "python -m service.bench"))
