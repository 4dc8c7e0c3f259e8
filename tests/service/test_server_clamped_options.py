"""An open asking for a longer idle timeout or resume window than the server allows is not refused but lowered to
the maximum: ``StreamOpened.options`` echoes what it got, and the ``stream opened`` log line says what was asked
and what was given, for an operator wondering why a camera's stream expired sooner than its client configured."""

from __future__ import annotations

import logging

from service_helpers import run

from service.client import Client, StreamOptions


def test_the_stream_opened_line_says_which_timeouts_were_lowered(start_server, caplog):
    server = start_server(idle_timeout_s=20.0, max_idle_timeout_s=60.0, max_resume_window_s=10.0)

    async def scenario():
        async with Client(server.target) as client:
            lowered = await client.open(StreamOptions(idle_timeout_s=600.0, resume_window_s=30.0), stream_id="far")
            await lowered.close()
            within = await client.open(StreamOptions(idle_timeout_s=45.0, resume_window_s=10.0), stream_id="near")
            await within.close()
            default = await client.open(StreamOptions(), stream_id="plain")  # 0: the server's default idle timeout
            await default.close()
            return lowered.opened.options

    with caplog.at_level(logging.INFO, logger="service.sessions"):
        echoed = run(scenario())
    assert (echoed.idle_timeout_s, echoed.resume_window_s) == (60.0, 10.0)
    lines = {r.stream_id: r for r in caplog.records if r.getMessage() == "stream opened"}
    assert lines["far"].clamped == {
        "idle_timeout_s": {"asked": 600.0, "given": 60.0},
        "resume_window_s": {"asked": 30.0, "given": 10.0},
    }
    assert lines["far"].options["idle_timeout_s"] == 60.0 and lines["far"].resume_window_s == 10.0
    assert lines["near"].clamped == {} and lines["plain"].clamped == {}
