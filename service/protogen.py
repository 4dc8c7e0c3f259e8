"""Generate the Python gRPC stubs in ``service/_pb/`` from ``proto/``, or check that they are up to date.

Usage::

    python -m service.protogen           # regenerate (what `make proto` runs)
    python -m service.protogen --check   # exit 1 and list the stale files if the stubs differ from the proto

The stubs are committed so the runtime needs only ``grpcio`` and ``protobuf``; generating them needs the
``dev`` extra (``grpcio-tools``). Generated files are flattened into ``service/_pb/`` and the one
cross-module import in the gRPC stub is made package-absolute, so nothing has to be put on ``sys.path``.

The check compares the stubs without the generator's version stamps (:data:`VERSION_STAMPS`): a newer
``grpcio-tools`` than the one that made them (a fresh install picks the latest) writes the same code under a newer
stamp, which is not a stale stub.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from plugins.cli_help import command_description

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILES = ("slotstream/v1/perception.proto", "inference/open_inference.proto")
OUTPUT_DIR = Path(__file__).resolve().parent / "_pb"
PACKAGE = "service._pb"
INIT_TEXT = '"""Generated protobuf and gRPC stubs for ``proto/``; do not edit (run ``make proto``)."""\n'


def generate() -> dict[str, str]:
    """Run ``protoc`` on :data:`PROTO_FILES` and return the files it writes, by file name.

    Raises:
        RuntimeError: ``grpcio-tools`` is missing or ``protoc`` rejects the proto (its messages are included).
    """
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("generating stubs needs grpcio-tools: pip install -e '.[dev]'") from error
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    files: dict[str, str] = {"__init__.py": INIT_TEXT}
    with tempfile.TemporaryDirectory() as tmp:
        for proto in PROTO_FILES:
            args = [
                "protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--pyi_out={tmp}",
                str(PROTO_ROOT / proto),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto} (see the messages above)")
            stem = Path(proto).with_suffix("")
            module = str(stem).replace("/", ".")
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                produced = Path(tmp) / f"{stem}{suffix}"
                text = produced.read_text()
                text = text.replace(f"from {module.rsplit('.', 1)[0]} import ", f"from {PACKAGE} import ")
                files[produced.name] = text
    return files


def descriptor_set() -> bytes:
    """The serialized ``FileDescriptorSet`` of :data:`PROTO_FILES`, with source info (comments) included.

    Raises:
        RuntimeError: as :func:`generate`.
    """
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("reading the proto needs grpcio-tools: pip install -e '.[dev]'") from error
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptors.pb"
        args = ["protoc", f"-I{PROTO_ROOT}", "--include_source_info", f"--descriptor_set_out={out}"]
        if protoc.main([*args, *(str(PROTO_ROOT / proto) for proto in PROTO_FILES)]) != 0:
            raise RuntimeError("protoc failed (see the messages above)")
        return out.read_bytes()


VERSION_STAMPS = (
    re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.MULTILINE),
    re.compile(r"^# Protobuf Python Version: .*$", re.MULTILINE),
    re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"),
)
"""The lines of the stubs that name the versions of the tools that generated them, not the proto's content."""


def stale_files(output_dir: Path = OUTPUT_DIR) -> list[str]:
    """Names of the generated files that are missing from, differ in (apart from :data:`VERSION_STAMPS`), or are
    extra in ``output_dir``."""
    expected = generate()
    stale = [name for name, text in expected.items() if _unstamped(_read(output_dir / name)) != _unstamped(text)]
    extra = [path.name for path in output_dir.glob("*.py*") if path.is_file() and path.name not in expected]
    return sorted(stale + extra)


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _unstamped(text: str | None) -> str | None:
    """``text`` with its :data:`VERSION_STAMPS` blanked out."""
    if text is None:
        return None
    for stamp in VERSION_STAMPS:
        text = stamp.sub(lambda match: match.group(1) if match.groups() else "", text)
    return text


def write(output_dir: Path = OUTPUT_DIR) -> list[Path]:
    """Regenerate the stubs into ``output_dir`` and return the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = output_dir / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m service.protogen", description=command_description(__doc__))
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated stubs in {OUTPUT_DIR}: {', '.join(stale)}; run `make proto`", file=sys.stderr)
            return 1
        print("generated stubs are up to date")
        return 0
    for path in write():
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
