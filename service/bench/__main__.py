"""``python -m service.bench``: ``--local`` benchmarks the engines in-process (:mod:`service.bench.local`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark the flags select; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--local" in args:
        from service.bench.local import main as local_main

        return local_main(args)
    print(
        "python -m service.bench: only the in-process engine benchmark is available here; pass --local "
        "(see python -m service.bench --local --help)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
