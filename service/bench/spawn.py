"""Start ``python -m service`` as a child process on an ephemeral port (for ``--suite`` runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from plugins.signals import signals_held
from service.config_sources import ENV_PREFIX

PLUGIN_BLOCK_LIST = ENV_PREFIX + "DISABLE_PLUGINS"
"""``plugins.registry.BLOCK_ENV_VAR``, named here without importing the plugin code (and torch)."""


class SpawnedServer:
    """A server child process; its port is read from its ``listening`` log line.

    Args:
        model_dir: model to serve.
        extra_args: more ``python -m service`` flags.
        timeout_s: how long to wait for it to be serving.
        own_settings_only: start it without the server settings (``SLOTSTREAM_*`` variables) of this environment:
            an auth token or TLS files meant for another server would make it refuse the clients started beside
            it. ``SLOTSTREAM_DISABLE_PLUGINS`` stays: it decides which class a component name is.

    Raises:
        RuntimeError: the server exited or was not serving within ``timeout_s``; the message (one line) says
            which, with the last line the server wrote (its own error message, or a traceback's last line).

    Whatever ends the wait for it to serve (that error, a ``KeyboardInterrupt``) stops the child first.
    """

    def __init__(
        self,
        model_dir: Path,
        extra_args: list[str] | None = None,
        timeout_s: float = 120.0,
        own_settings_only: bool = False,
    ) -> None:
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not (own_settings_only and name.startswith(ENV_PREFIX) and name != PLUGIN_BLOCK_LIST)
        }
        env = {**inherited, "SLOTSTREAM_LOG_FORMAT": "json", "SLOTSTREAM_LOG_LEVEL": "INFO"}
        command = [sys.executable, "-m", "service", "--model-dir", str(model_dir), "--listen", "127.0.0.1:0"]
        command += ["--metrics-listen", "", *(extra_args or [])]
        self.port = 0
        self._serving = threading.Event()
        self._tail: list[str] = []
        deadline = time.monotonic() + timeout_s
        started = False
        try:
            # Ctrl-C or SIGTERM while the child is made (it runs before Popen returns) would leave it with no one to
            # stop it: held until it is recorded, they stop it below.
            with signals_held(signal.SIGINT, signal.SIGTERM):
                self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
                self._reader = threading.Thread(target=self._read, daemon=True)
                self._reader.start()
                started = True
            while not self._serving.wait(0.1):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    status = self.process.poll()
                    lines = [line.strip() for line in self._tail if line.strip()]
                    why = f"not serving after {timeout_s:g} s" if status is None else f"exited with status {status}"
                    last = lines[-1] if lines else "it wrote nothing"
                    raise RuntimeError(f"the server did not start ({why}): {last}")
        except BaseException:  # a failed start, or Ctrl-C / SIGTERM while it starts: the child must not outlive us
            if started:
                self.close()
            raise

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._tail = [*self._tail[-50:], line]
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("message") == "listening":
                self.port = int(entry["port"])
            elif entry.get("message") == "serving":
                self._serving.set()

    @property
    def target(self) -> str:
        """``host:port`` of the server."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """SIGTERM the server and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
