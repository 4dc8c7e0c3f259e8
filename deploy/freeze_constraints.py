"""Write deploy/constraints.txt: the exact versions of everything the CPU image installs, as installed here.

    .venv/bin/python deploy/freeze_constraints.py > deploy/constraints.txt

The packages are the runtime closure of ``slotstream[server,train,export,onnx]`` (what deploy/Dockerfile installs):
the project's requirements with those extras, then theirs, recursively, with the environment markers evaluated for
this interpreter and platform; their versions are the ones installed in this environment, the ones ``make test`` ran
with (``pip freeze`` restricted to that closure). Left out: the project itself and the ``dev`` extra's tools, which
the image does not install. Run it in the environment whose tests passed, after ``make`` (which installs
``-e '.[server,train,export,onnx,dev]'``).
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "slotstream"
EXTRAS = ("server", "train", "export", "onnx")

HEADER = """\
# Exact versions for deploy/Dockerfile (the CPU image): the runtime closure of slotstream[server,train,export,onnx]
# as installed in the development environment whose tests passed. Generated; do not edit by hand:
#   .venv/bin/python deploy/freeze_constraints.py > deploy/constraints.txt
# A constraint installs nothing: it only fixes the version of a package that something requires. So the nvidia-*,
# cuda-* and triton pins (requirements of torch's PyPI build, which the development environment has) are inert in
# the CPU image, whose torch comes from PyTorch's CPU index without them. The GPU image (deploy/Dockerfile.gpu) does
# not use this file: see the comment there.
"""


def runtime_closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """``{canonical name: installed version}`` of every distribution ``project[extras]`` needs at run time.

    Raises:
        importlib.metadata.PackageNotFoundError: the project or one of its requirements is not installed.
    """
    found: dict[str, str] = {}
    followed: set[tuple[str, str]] = set()  # (canonical name, extra) pairs whose requirements are queued
    pending = [(project, extras)]
    while pending:
        name, wanted = pending.pop()
        distribution = metadata.distribution(name)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is not None and not any(requirement.marker.evaluate(e) for e in environments):
                continue
            key = canonicalize_name(requirement.name)
            found.setdefault(key, metadata.version(requirement.name))
            # A package reached again with an extra not seen before brings that extra's requirements too.
            new_extras = tuple(e for e in ("", *sorted(requirement.extras)) if (key, e) not in followed)
            if new_extras:
                followed.update((key, e) for e in new_extras)
                pending.append((requirement.name, tuple(e for e in new_extras if e)))
    found.pop(canonicalize_name(project), None)
    return found


def main() -> int:
    """Print the constraints file."""
    closure = sorted(runtime_closure().items())
    pins = "".join(f"{metadata.distribution(name).metadata['Name']}=={version}\n" for name, version in closure)
    sys.stdout.write(HEADER + pins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
