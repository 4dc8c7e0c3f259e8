"""The server's log line format and the standard metrics next to its own."""

from __future__ import annotations

import calendar
import json
import logging
import sys
import time

import pytest

from service.logs import JsonFormatter, TextFormatter
from service.metrics import Metrics


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("service.test", logging.WARNING, __file__, 1, "refused %s", ("a call",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_a_utc_timestamp_and_the_extra_fields():
    record = _record(peer="ipv4:127.0.0.1:5000")
    entry = json.loads(JsonFormatter().format(record))
    assert (
        entry["message"] == "refused a call" and entry["level"] == "WARNING" and entry["peer"] == "ipv4:127.0.0.1:5000"
    )
    assert entry["time"].endswith("Z"), "a timestamp without a zone leaves log shippers guessing"
    stamped = calendar.timegm(time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(stamped - record.created) < 1.0, (entry["time"], record.created)


def test_text_lines_append_the_extra_fields():
    formatter = TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(_record(peer="p", why="no token")) == "WARNING refused a call peer=p why=no token"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process collector reads /proc (Linux)")
def test_process_metrics_are_served_with_the_servers_own():
    metrics = Metrics()
    assert (metrics.registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert metrics.registry.get_sample_value("slotstream_ready") == 0
