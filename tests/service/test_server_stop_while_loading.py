"""SIGTERM while the model loads (a TensorRT engine build can take minutes) ends the server at once with status 0,
instead of leaving it deaf to the signal until its supervisor kills it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from service_helpers import wait_for_child

REPO = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from service.config import ServiceConfig
    from service.engine import load_engine
    from service.logs import configure_logging
    from service.process import serve

    marker, model_dir = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_factory(config):
        marker.touch()  # loading has begun
        time.sleep(60)  # an engine build
        return load_engine(config.backend, config.model_dir, name="tiny", device="cpu", max_batch_size=1)

    config = ServiceConfig(listen="127.0.0.1:0", metrics_listen="", model_dir=model_dir)
    configure_logging("INFO", "json")
    asyncio.run(serve(config, slow_factory))
    """
)


def test_sigterm_while_the_model_loads_exits_at_once(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "loading"
    with subprocess.Popen(
        [sys.executable, "-c", SERVER, str(marker), str(model_dir)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as process:
        try:
            wait_for_child(process, marker.exists, "the model load never began")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            waited = time.monotonic() - signalled
        finally:
            process.kill()  # a no-op once it has exited
    assert process.returncode == 0, stderr
    assert waited < 10, f"exited {waited:.1f} s after SIGTERM: it waited for the load"
    messages = [json.loads(line)["message"] for line in stderr.splitlines() if line.startswith("{")]
    assert "shutdown requested while the model loads: the load is abandoned" in messages
