"""``ModelVersions``: the versions of the served model in memory, for a model update without a restart.

The *current* runner is the one new streams get (the session manager's ``runners[name]``); a reload
(``Admin.ReloadModel``) loads the model's folder again and, when its version changed, warms the new version up
while the current one serves on, then makes it current. Every stream keeps the runner it opened with
(:attr:`Session.runner`), so a stream opened before the reload runs the old version until it ends; the old
runner is *retired* meanwhile, and freed once the session manager releases its last stream.

All methods run on the event loop; loading and warming up run on other threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.engine import Engine
from service.errors import ErrorCode, StreamAbort
from service.metrics import Metrics
from service.runner import ModelRunner
from service.session import Session
from service.sessions import SessionManager
from service.types import ReloadOutcome

RETIRED_CLOSE_S = 30.0
"""How long freeing a retired version waits for a model call still running on it (none should be: it has no
stream left)."""
_log = logging.getLogger(__name__)


class ModelVersions:
    """The current runner of the served model and the retired ones still running streams.

    Args:
        manager: the session manager; its ``on_release`` hook is taken to free retired versions.
        current: the runner of the version loaded at start-up.
        load_engine: loads the model's folder again (blocking; run on a thread).
        make_runner: makes the runner of a newly loaded engine (as the server made ``current``).
        metrics: where reloads (``slotstream_model_reloads_total``) and versions in memory
            (``slotstream_model_versions``) are counted.
        warm_up: warm a new version up before it is made current (``--warmup``).
    """

    def __init__(
        self,
        manager: SessionManager,
        current: ModelRunner,
        load_engine: Callable[[], Engine],
        make_runner: Callable[[Engine], ModelRunner],
        metrics: Metrics,
        *,
        warm_up: bool = True,
    ) -> None:
        self._manager = manager
        self.current = current
        self.retired: list[ModelRunner] = []
        """Earlier versions still running streams, the oldest first."""
        self._load_engine = load_engine
        self._make_runner = make_runner
        self._metrics = metrics
        self._warm_up = warm_up
        self._lock = asyncio.Lock()
        self._loading: ModelRunner | None = None  # a new version while it warms up
        self._freeing: set[asyncio.Task[bool]] = set()
        self._shutdown = asyncio.Event()
        self.reload_abandoned = False
        """Set by :meth:`close` when a reload was still loading or warming up: its thread cannot be stopped, and the
        process should not wait for it at exit."""
        self._reloads: set[asyncio.Task[ReloadOutcome]] = set()
        self._closed = False
        manager.on_release = self._released
        self._show_versions()

    def _show_versions(self, loading: bool = False) -> None:
        """Set ``slotstream_model_versions``: the versions in service, and one more while a reload holds a newly
        loaded one (``loading``)."""
        self._metrics.model_versions.set(len(self.runners) + loading)

    @property
    def runners(self) -> list[ModelRunner]:
        """Every version in service: the current one first, then the retired ones."""
        return [self.current, *self.retired]

    def busy_for_s(self) -> float:
        """Seconds the longest-running model call of any version has been running (for the watchdog)."""
        return max(runner.busy_for_s() for runner in self.runners)

    async def reload(self, model: str = "") -> ReloadOutcome:
        """Load the model's folder again and, when its version changed, make it current (see the module).

        The reload goes on to its end even if the caller stops waiting, and reloads run one at a time.

        Raises:
            StreamAbort: ``UNKNOWN_MODEL`` (``model`` is not served), ``NOT_READY`` (still starting),
                ``SHUTTING_DOWN`` (a drain began, before or during the reload), ``MODEL_LOAD_FAILED`` (the folder did
                not load or warm up, or holds a model of another name); the current version serves on.
        """
        self._manager.runner(model)
        self._check_serving()
        task = asyncio.ensure_future(self._reload_one_at_a_time())
        self._reloads.add(task)  # a strong reference while it runs, whether or not its caller still waits
        task.add_done_callback(_settled)
        task.add_done_callback(self._reloads.discard)
        stopping = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():  # the server began shutting down first: the reload goes on until close() abandons it
            raise StreamAbort(
                ErrorCode.SHUTTING_DOWN,
                "the server began shutting down during the reload: the new version was not made current",
            )
        return task.result()

    def begin_shutdown(self) -> None:
        """The server is shutting down: a reload not finished yet is answered ``SHUTTING_DOWN`` now, and any later
        one at once."""
        self._shutdown.set()

    async def _reload_one_at_a_time(self) -> ReloadOutcome:
        async with self._lock:
            self._check_serving()  # a drain may have begun while this waited for the lock
            return await self._reload()

    async def _reload(self) -> ReloadOutcome:
        loop = asyncio.get_running_loop()
        previous = self.current
        name, version = previous.card.name, previous.card.version
        started = time.perf_counter()
        try:
            engine = await loop.run_in_executor(None, self._load_engine)
        except Exception as error:
            raise self._failed(f"the model's folder did not load ({type(error).__name__}: {error})") from error
        load_s = time.perf_counter() - started
        self._show_versions(loading=True)  # the new engine is in memory from here
        if engine.card.version == version or engine.card.name != name or self._closed:
            await loop.run_in_executor(None, engine.close)
            self._show_versions()
            self._check_serving()
            if engine.card.name != name:
                raise self._failed(f"the model's folder now holds model {engine.card.name!r}, not {name!r}")
            self._metrics.model_reloads.labels("unchanged").inc()
            _log.info("model unchanged by the reload", extra={"model": name, "model_version": version})
            return ReloadOutcome(name, version, version, False, 0, load_s, 0.0)
        kept = next((r for r in self.retired if r.card.version == engine.card.version), None)
        if kept is not None:  # back to a version streams still run: that copy serves, not a second one
            await loop.run_in_executor(None, engine.close)
            self._check_serving()
            self.retired.remove(kept)
            return self._make_current(kept, previous, load_s, 0.0)
        runner = self._loading = self._make_runner(engine)
        warm_up_s = 0.0
        try:
            if self._warm_up:
                started = time.perf_counter()
                await runner.warm_up()
                warm_up_s = time.perf_counter() - started
        except Exception as error:
            await runner.close(RETIRED_CLOSE_S)
            self._show_versions()
            raise self._failed(f"the new version did not warm up ({type(error).__name__}: {error})") from error
        finally:
            self._loading = None
        if not self._closed and self._manager.phase != "serving":  # (once closed, close() abandoned it)
            await runner.close(RETIRED_CLOSE_S)
            self._show_versions()
        self._check_serving()
        return self._make_current(runner, previous, load_s, warm_up_s)

    def _make_current(
        self, runner: ModelRunner, previous: ModelRunner, load_s: float, warm_up_s: float
    ) -> ReloadOutcome:
        """Give new streams ``runner`` instead of ``previous``, which is retired while streams run it, else freed."""
        name, version = previous.card.name, previous.card.version
        self._manager.runners[name] = runner
        self.current = runner
        on_previous = self._manager.streams_of(previous)
        if on_previous:
            self.retired.append(previous)
        else:
            self._free(previous)
        self._metrics.model_reloads.labels("reloaded").inc()
        self._show_versions()
        _log.info(
            "model reloaded",
            extra={
                "model": name,
                "previous_version": version,
                "model_version": runner.card.version,
                "streams_on_previous": on_previous,
                "load_s": round(load_s, 3),
                "warm_up_s": round(warm_up_s, 3),
            },
        )
        return ReloadOutcome(name, version, runner.card.version, True, on_previous, load_s, warm_up_s)

    def _check_serving(self) -> None:
        """Refuse a reload unless the server serves.

        Raises:
            StreamAbort: ``NOT_READY`` while starting, ``SHUTTING_DOWN`` once a drain began.
        """
        phase = self._manager.phase
        if phase == "starting":
            raise StreamAbort(ErrorCode.NOT_READY, "the server is still starting: reload once it serves")
        if phase != "serving" or self._closed:
            raise StreamAbort(ErrorCode.SHUTTING_DOWN, "the server is shutting down: nothing was reloaded")

    def _failed(self, why: str) -> StreamAbort:
        """A failed reload, counted and logged; the current version serves on."""
        self._metrics.model_reloads.labels("failed").inc()
        version = self.current.card.version
        _log.warning("model reload failed", extra={"why": why, "model_version": version})
        return StreamAbort(ErrorCode.MODEL_LOAD_FAILED, f"{why}; still serving version {version}")

    def _released(self, session: Session) -> None:
        """A stream was released: free its version if it was retired and ran no other stream."""
        runner = session.runner
        if not self._closed and runner in self.retired and self._manager.streams_of(runner) == 0:
            self.retired.remove(runner)
            self._free(runner)
            self._show_versions()

    def _free(self, runner: ModelRunner) -> None:
        """Close ``runner`` in the background."""
        _log.info("model version freed", extra={"model": runner.card.name, "model_version": runner.card.version})
        task = asyncio.ensure_future(runner.close(RETIRED_CLOSE_S))
        self._freeing.add(task)
        task.add_done_callback(self._freeing.discard)

    async def close(self, timeout_s: float) -> bool:
        """Close every version (at shutdown), waiting at most ``timeout_s`` for the model calls still running; a
        folder a reload still loads or warms up is left behind (as a start-up warm-up is), and
        :attr:`reload_abandoned` says so. Returns ``False`` when a model call outlasted the wait (see
        :meth:`ModelRunner.close`)."""
        self._closed = True
        self.begin_shutdown()
        self.reload_abandoned = self._lock.locked()  # a reload holds the lock while it loads or warms up
        for reload in self._reloads:  # its thread goes on (the process exits without it); the task ends here
            reload.cancel()
        if self._loading is not None:
            await self._loading.abandon()
        results = await asyncio.gather(
            *(runner.close(timeout_s) for runner in self.runners), *self._freeing, return_exceptions=True
        )
        return all(result is True for result in results)


def _settled(task: asyncio.Task[ReloadOutcome]) -> None:
    """Mark a reload's error as seen, so that the error of a reload whose caller stopped waiting is not reported as
    never retrieved (a failed load is logged on its own)."""
    if not task.cancelled():
        task.exception()
