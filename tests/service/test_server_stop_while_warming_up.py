"""SIGTERM during the model's warm-up (before the server reports SERVING) ends the server at once with status 0, as
during the load: nothing is served yet, so the warm-up's model call is abandoned instead of waited for."""

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
    from service.logs import configure_logging
    from service.process import serve
    from service.server import default_engine_factory

    marker, model_dir = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_warm_up_factory(config):
        engine = default_engine_factory(config)

        def warmup(batch_sizes):
            marker.touch()  # the warm-up has begun
            time.sleep(60)  # a long first call (a GPU's kernel autotuning, say)

        engine.warmup = warmup
        return engine

    config = ServiceConfig(listen="127.0.0.1:0", metrics_listen="", model_dir=model_dir, grace_period_s=20.0)
    configure_logging("INFO", "json")
    asyncio.run(serve(config, slow_warm_up_factory))
    """
)


def test_sigterm_while_the_model_warms_up_exits_at_once(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "warming"
    with subprocess.Popen(
        [sys.executable, "-c", SERVER, str(marker), str(model_dir)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    ) as process:
        try:
            wait_for_child(process, marker.exists, "the warm-up never began")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=40)
            waited = time.monotonic() - signalled
        finally:
            process.kill()  # a no-op once it has exited
    assert process.returncode == 0, stderr
    assert waited < 10, f"exited {waited:.1f} s after SIGTERM: it waited for the warm-up"
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert "shutdown requested while the model warms up: the warm-up is abandoned" in [e["message"] for e in entries]
    assert not [e for e in entries if e["level"] in ("ERROR", "CRITICAL")], stderr
