"""``python -m plugins list [--json]``: every registered component, by kind, with the plugin that added it.

The text listing also shows names several installed plugins register (ambiguous, so unusable until all but one
are blocked); ``--json`` lists only usable names.
"""

from __future__ import annotations

import argparse
import json
import sys

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("server", "python -m plugins")

from plugins.manager import BLOCK_ENV_VAR, build_plugin_manager


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m plugins", description=command_description(__doc__, paragraphs=2))
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list registered components by kind")
    listing.add_argument("--json", action="store_true", help="print {kind: [sorted names]} as JSON")
    args = parser.parse_args(argv)

    setup = build_plugin_manager()
    registry = setup.registry
    if args.json:
        json.dump(registry.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for kind, names in registry.as_dict().items():
        print(f"{kind}:")
        ambiguous = {name: owners for (of_kind, name), owners in setup.ambiguous.items() if of_kind == kind}
        for name in names or ([] if ambiguous else ["(none)"]):
            owner = f"  [{registry.owner(kind, name)}]" if names else ""
            print(f"  {name}{owner}")
        for name, owners in sorted(ambiguous.items()):
            print(f"  {name}  [ambiguous: {', '.join(owners)}; block all but one with {BLOCK_ENV_VAR}]")
    if setup.external:  # with the distribution and version each came from
        origins = registry.external_plugins
        described = [f"{name} ({origins[name]})" if name in origins else name for name in setup.external]
        print(f"external plugins: {', '.join(described)}")
    if setup.blocked:
        print(f"blocked plugins: {', '.join(setup.blocked)}")
    for name, reason in setup.failed.items():
        print(f"left out: {name} ({reason})")
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m plugins"))
