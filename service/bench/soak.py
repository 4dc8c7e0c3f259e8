"""``python -m service.bench --soak``: open and close streams many times against a server this command starts, and
report whether anything is left behind: streams the server still holds, and the growth of its resident memory.

    python -m service.bench --soak --model DIR --cycles 1000 --frames 2 --new-client-every 50 --json out.json

Each cycle opens a stream, sends ``--frames`` frames (each answered before the next is sent) and closes it; every
``--new-client-every`` cycles the client is closed and a new one made, so connections come and go too (the churn
of robots that reconnect). The server's resident memory (``VmRSS`` of its process, read from ``/proc``) is sampled
after the first tenth of the cycles, which warms up allocators and caches, and again every tenth after; the
report gives each sample, the growth from the first, and the streams the server still holds at the end, read
through its ``Admin.ListStreams`` (the command starts the server with an admin token of its own). Linux only
(``/proc``).

It prints a summary; ``--json`` writes the whole report. Exit status: 0 when the run completed (the report says what
it found; it does not judge), 2 for bad arguments or a server that does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import user_path
from service.bench.cli import json_output_problems, usage_error
from service.bench.provenance import provenance
from service.bench.spawn import SpawnedServer
from service.bench.stats import summarize
from service.client.connection import Client
from service.client.synthetic import synthetic_clip
from service.config import DEFAULT_MODEL_DIR, ConfigError, ServiceConfig

SAMPLES = 10
"""Memory samples after the warm-up tenth (one after each further tenth of the cycles)."""


def resident_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (``VmRSS`` in ``/proc/PID/status``), in bytes.

    Raises:
        OSError: the process is gone, or this is not Linux.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/{pid}/status has no VmRSS line")


async def soak(
    target: str, token: str, clip: list[np.ndarray], cycles: int, frames: int, new_client_every: int, pid: int
) -> dict[str, Any]:
    """Run ``cycles`` open-send-close cycles against ``target`` (the server's process is ``pid``) and report them:
    cycle times, memory samples and their growth, and the streams the server holds at the end."""
    warmup = max(1, cycles // SAMPLES)
    sample_at = {warmup, *(warmup + (cycles - warmup) * k // SAMPLES for k in range(1, SAMPLES + 1))}
    samples: list[dict[str, float]] = []
    cycle_ms: list[float] = []
    client = Client(target)
    started = time.perf_counter()
    try:
        for cycle in range(1, cycles + 1):
            if cycle > 1 and (cycle - 1) % new_client_every == 0:
                await client.close()
                client = Client(target)
            began = time.perf_counter()
            stream = await client.open()
            for index in range(frames):
                await stream.process(clip[(cycle + index) % len(clip)])
            await stream.close()
            cycle_ms.append((time.perf_counter() - began) * 1e3)
            if cycle in sample_at:
                samples.append({"cycle": cycle, "server_rss_mb": round(resident_bytes(pid) / 2**20, 1)})
    finally:
        await client.close()
    elapsed = time.perf_counter() - started
    async with Client(target, token=token) as admin:
        left = await admin.list_streams()
    first, last = samples[0]["server_rss_mb"], samples[-1]["server_rss_mb"]
    return {
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "cycle_ms": summarize(cycle_ms),
        "clients": -(-cycles // new_client_every),
        "server_rss_mb": samples,
        "server_rss_growth_mb": round(last - first, 1),
        "server_rss_growth_percent": round(100 * (last - first) / first, 2),
        "streams_left": len(left),
    }


def build_parser() -> argparse.ArgumentParser:
    """The ``--soak`` options."""
    parser = argparse.ArgumentParser(
        prog="python -m service.bench --soak",
        description="Open and close streams many times against a server this command starts; report the streams it "
        "still holds and the growth of its resident memory.",
    )
    parser.add_argument("--soak", action="store_true", required=True, help="open and close streams many times")
    parser.add_argument(
        "--model", type=user_path, default=DEFAULT_MODEL_DIR, help="model the server serves (default: the embedded)"
    )
    parser.add_argument(
        "--cycles", type=int, default=1000, help="streams opened and closed, one after another (>= 10; default: 1000)"
    )
    parser.add_argument("--frames", type=int, default=2, help="frames each stream sends before it closes (default: 2)")
    parser.add_argument(
        "--new-client-every",
        type=int,
        default=50,
        help="cycles per client (connection) before a new one is made (default: 50)",
    )
    parser.add_argument("--size", type=int, default=64, help="side of the square frames sent (>= 8; default: 64)")
    parser.add_argument("--server-args", default="", help="more `python -m service` flags, in one string")
    parser.add_argument("--json", type=user_path, help="write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the report and write it as JSON. Exit status: 0 after a completed run, 2 for bad
    arguments or a server that does not start."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    problems = [
        f"--{flag.replace('_', '-')} must be >= {least}, got {getattr(args, flag)}"
        for flag, least in (("cycles", 10), ("frames", 0), ("new_client_every", 1), ("size", 8))
        if getattr(args, flag) < least
    ]
    problems += json_output_problems(args.json, args.model)
    if not Path("/proc/self/status").is_file():
        problems.append("--soak reads the server's memory from /proc, which this system lacks (Linux only)")
    if not args.model.is_dir():
        problems.append(f"--model {args.model} is not a directory")
    if problems:
        return usage_error("--soak", problems)
    try:  # what the server will run with (its own flags alone: it starts without this environment's settings)
        device = ServiceConfig.from_sources(["--model-dir", str(args.model), *args.server_args.split()], {}).device
    except ConfigError as error:
        return usage_error("--soak", [f"--server-args: {error}"])
    clip = synthetic_clip(8, (args.size, args.size))
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="slotstream-soak-") as folder:
        token_file = Path(folder) / "admin-token"
        token_file.write_text(f"{token}\n")
        token_file.chmod(0o600)
        server_args = ["--admin-token-file", str(token_file), *args.server_args.split()]
        try:
            server = SpawnedServer(args.model, server_args, own_settings_only=True)
        except RuntimeError as error:
            return usage_error("--soak", [str(error)])
        with server:
            report = asyncio.run(
                soak(server.target, token, clip, args.cycles, args.frames, args.new_client_every, server.process.pid)
            )
    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "soak"},
        **report,
        "provenance": provenance(args_list, device=device),
    }
    print(summary(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def summary(report: dict[str, Any]) -> str:
    """The report in two lines for a person."""
    first, last = report["server_rss_mb"][0], report["server_rss_mb"][-1]
    return (
        f"{report['cycles']} streams opened and closed over {report['clients']} client connections, "
        f"{report['cycles_per_s']} a second (cycle p50 {report['cycle_ms']['p50']} ms)\n"
        f"server memory {first['server_rss_mb']} MB after cycle {first['cycle']}, {last['server_rss_mb']} MB after "
        f"cycle {last['cycle']} ({report['server_rss_growth_mb']:+} MB, {report['server_rss_growth_percent']:+} %); "
        f"streams left on the server: {report['streams_left']}"
    )
