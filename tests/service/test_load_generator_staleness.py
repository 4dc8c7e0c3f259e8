"""The load generator's ``--max-staleness-s``: its streams carry the limit, and the report counts the frames the
server dropped as stale apart from other drops."""

from __future__ import annotations

import pytest
from service_helpers import make_video, run, slow_factory

from service.bench.load import main
from service.bench.remote import LoadSpec, run_load


def test_frames_that_wait_longer_than_the_limit_are_reported_as_stale(start_server):
    """Each model call takes 0.2 s and each stream keeps 3 frames in flight, so its later frames wait about 0.4 s:
    with a 0.1 s limit they are dropped as stale; every frame is answered one way or the other."""
    factory, _ = slow_factory(delay_s=0.2)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    spec = LoadSpec(server.target, streams=2, frames=6, window=3, warmup_frames=0, max_staleness_s=0.1)
    report = run(run_load(spec, make_video(seed=42, frames=3, size=(32, 32)))).report()
    assert report["spec"]["max_staleness_s"] == 0.1
    assert report["dropped"] > 0 and report["dropped_by_reason"] == {"stale": report["dropped"]}
    assert report["results"] + report["dropped"] == report["sent"] and report["lost"] == 0


def test_without_a_limit_nothing_is_dropped(server):
    spec = LoadSpec(server.target, streams=1, frames=4, window=3, warmup_frames=0)
    report = run(run_load(spec, make_video(seed=43, frames=2, size=(32, 32)))).report()
    assert report["dropped"] == 0 and report["dropped_by_reason"] == {}


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_limit_that_is_negative_or_not_finite_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--target", "127.0.0.1:1", "--max-staleness-s", value])
    assert exited.value.code == 2
    assert "--max-staleness-s must be a number >= 0 (0: no limit)" in capsys.readouterr().err
