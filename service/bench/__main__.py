"""``python -m service.bench``: ``--local`` benchmarks the engines in-process (:mod:`service.bench.local`);
``--target`` and ``--suite`` load a server over gRPC (:mod:`service.bench.load`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark the flags select; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--local" in args:
        from service.bench.local import main as local_main

        return local_main(args)
    if "--target" in args or "--suite" in args or any(a.startswith("--target=") for a in args):
        from service.bench.load import main as load_main

        return load_main(args)
    print(
        "python -m service.bench: pass --target HOST:PORT (gRPC load generator), --suite (the README figures) "
        "or --local (engines in-process); add --help to any of them",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
