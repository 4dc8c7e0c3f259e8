"""``python -m training.export --model DIR --out DIR [--opset N] [--fp16] [--tensorrt [--max-batch-size N] |
--onnxruntime-only]``.

``--fp16`` records the precision TensorRT engines are built with where the export is served (the ``tensorrt``
backend, and the ``onnx`` backend's TensorRT execution provider); the ONNX graphs stay fp32, and only
``--tensorrt`` builds and checks fp16 engines here. ``--max-batch-size`` sizes the engines ``--tensorrt`` builds
and checks, so it is refused without ``--tensorrt`` (the server's own ``--max-batch-size`` decides at serving).

Exit status: 0 on success, 1 when a check failed (the message says which, in a line or a few: never the
exporter's graph dump), 2 for bad arguments or a missing or unreadable model directory. A failed export removes
the ``--out`` folder when it created it and nothing else was written there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("export", "python -m training.export")

from plugins.files import user_path_text
from plugins.registry import RegistryError
from service.backends.manifest import Manifest, ManifestError
from training.environment import size_torch_threads_noted
from training.export.exporter import ExportError, ExportOptions, export_model
from training.export.float64_reference import float64_summary
from training.export.graphs import DEFAULT_OPSET, SUPPORTED_OPSETS

DEFAULT_MAX_BATCH_SIZE = ExportOptions.max_batch_size


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export a slot model to ONNX (first_step + step graphs), check it and measure its parity.",
    )
    parser.add_argument(
        "--model", type=user_path_text, required=True, help="model directory (config.json + model.safetensors)"
    )
    parser.add_argument(
        "--out",
        type=user_path_text,
        required=True,
        help="export directory: new, empty, an earlier export of the same model (replaced) or the model directory "
        "itself",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="let --out be an export of another model (another version), which is replaced; refused without it, "
        "since a model directory exported in place holds the model itself",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        choices=list(SUPPORTED_OPSETS),
        help="ONNX opset of the graphs (default: %(default)s)",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="record fp16 as the precision of the TensorRT engines built where the export is served (--backend "
        "tensorrt, and --backend onnx --device tensorrt; the server's --tensorrt-fp16 overrides it). The ONNX "
        "graphs stay fp32; without --tensorrt no fp16 engine is built or checked here (default: fp32)",
    )
    backends = parser.add_mutually_exclusive_group()
    backends.add_argument(
        "--tensorrt", action="store_true", help="also build TensorRT engines into OUT/tensorrt (NVIDIA GPU needed)"
    )
    backends.add_argument(
        "--onnxruntime-only",
        action="store_true",
        help="export for ONNX Runtime (--backend onnx) even when TensorRT cannot take the graphs: what TensorRT "
        "lacks (an operator, a Resize mode) is recorded in the manifest and printed as a warning instead of failing "
        "the export, and only then does the tensorrt backend refuse the export",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        help="with --tensorrt: largest batch of the engines it builds and checks, which should be the server's "
        f"--max-batch-size (default: {DEFAULT_MAX_BATCH_SIZE})",
    )
    args = parser.parse_args(argv)
    if args.max_batch_size is not None and not args.tensorrt:
        parser.error(
            "--max-batch-size sizes the TensorRT engines --tensorrt builds and checks; without --tensorrt nothing "
            "uses it (the server's --max-batch-size sizes the engines it builds): add --tensorrt or leave it out"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    options = ExportOptions(
        opset=args.opset,
        fp16=args.fp16,
        tensorrt=args.tensorrt,
        max_batch_size=DEFAULT_MAX_BATCH_SIZE if args.max_batch_size is None else args.max_batch_size,
        onnxruntime_only=args.onnxruntime_only,
        replace=args.replace,
    )
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    try:
        manifest = export_model(args.model, args.out, options)
    except (OSError, ValueError, ManifestError, RegistryError) as error:  # OSError: missing or unwritable paths
        print(f"export: {error}", file=sys.stderr)
        return 2
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    except (RuntimeError, ImportError) as error:  # BackendUnavailable (--tensorrt without TensorRT or a GPU), no ORT
        print(f"export: {error}", file=sys.stderr)
        return 1
    print(summary(manifest, args.out))
    return 0


def summary(manifest: Manifest, out: str) -> str:
    """A few lines describing a finished export."""
    lines = [
        f"exported {manifest.source.version} to {out}: input {manifest.input.height}x{manifest.input.width}, "
        f"{manifest.num_slots} slots of {manifest.slot_dim}, masks {manifest.mask_size[0]}x{manifest.mask_size[1]}, "
        f"opset {manifest.opset}, fp32 graphs",
        f"  TensorRT engines: {precision_note(manifest)}",
    ]
    for graph in manifest.graphs.values():
        ops = ", ".join(f"{op} x{count}" for op, count in graph.operators.items())
        lines.append(f"  {graph.file}: {sum(graph.operators.values())} nodes ({ops})")
    for report in manifest.parity.values():
        lines.append(
            f"  parity {report.runtime}: {report.frames} frames x {report.videos} videos, slots max |diff| "
            f"{report.slots_max_abs:.2g}, masks max |diff| {report.masks_max_abs:.2g}, argmax agreement "
            f"{report.argmax_agreement:.4%} ({report.argmax_tied:.3%} of pixels tied within {report.tie_tolerance:g}; "
            f"plain argmax {report.argmax_agreement_all:.4%}), batch sizes {report.batch_sizes}"
        )
        note = float64_summary(report)  # maxima above the limit that fp32 rounding explains, or does not
        if note is not None:
            lines.append(f"    {note}")
        if report.build:  # the engines checked: a server building others (batch profile, GPU, version) warns
            lines.append(f"    built for {', '.join(f'{key} {value}' for key, value in sorted(report.build.items()))}")
    if manifest.tensorrt_problems:
        lines.append(
            "  warning: exported for ONNX Runtime only; TensorRT cannot take these graphs (the tensorrt backend "
            "refuses them):"
        )
        lines += [f"    {problem}" for problem in manifest.tensorrt_problems]
    return "\n".join(lines)


def precision_note(manifest: Manifest) -> str:
    """What the recorded precision means for TensorRT engines built from the export, and whether any were checked
    (``--fp16`` without ``--tensorrt`` records the precision only)."""
    if "tensorrt" in manifest.parity:
        checked = "these engines were built and checked against PyTorch here (parity below)"
    else:
        checked = "none was built or checked here (--tensorrt on the serving GPU checks them)"
    return (
        f"{manifest.precision}: the precision --backend tensorrt and --backend onnx --device tensorrt build them at "
        f"(the server's --tensorrt-fp16 overrides it); {checked}"
    )


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    sys.exit(exit_status_of(main, "python -m training.export"))
