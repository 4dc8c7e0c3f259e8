"""Server settings past what serving can use are refused at start-up naming the flag, and a batch size above the
stream count is lowered to it: a batch holds at most one frame of each stream, and a warm-up at 5000 frames had
ended the start in an allocator error that named no flag."""

from __future__ import annotations

import pytest
from service_helpers import run

from service.client import Client
from service.config import MAX_BATCH_SIZE, MAX_RESUME_HISTORY, ConfigError, ServiceConfig


@pytest.mark.parametrize(
    ("flag", "field", "most"),
    [
        ("--max-batch-size", "max_batch_size", MAX_BATCH_SIZE),
        ("--resume-history", "resume_history", MAX_RESUME_HISTORY),
    ],
)
def test_a_setting_past_its_bound_is_refused_naming_the_flag(flag: str, field: str, most: int) -> None:
    assert getattr(ServiceConfig(**{field: most}), field) == most
    with pytest.raises(ConfigError, match=rf"{flag} must be at most {most} \(.+\), got {most + 1}"):
        ServiceConfig(**{field: most + 1})
    with pytest.raises(ConfigError, match=rf"{flag} must be at most {most} "):
        ServiceConfig(**{field: 5_000_000_000})  # past the 32-bit wire field too


def test_the_batch_size_in_effect_is_at_most_the_stream_count() -> None:
    assert ServiceConfig(max_streams=3, max_batch_size=16).resolved_max_batch_size == 3
    assert ServiceConfig(max_streams=64, max_batch_size=16).resolved_max_batch_size == 16


def test_a_server_with_fewer_streams_than_its_batch_size_warms_up_and_describes_the_lower_size(start_server) -> None:
    server = start_server(max_streams=2, max_batch_size=16)
    runner = server.server.manager.runners["tiny"]
    assert runner.max_batch_size == 2
    assert runner.card.max_batch_size == 16  # the engine keeps the size an export's TensorRT engines were built at

    async def card():
        async with Client(server.target) as client:
            return await client.describe()

    assert run(card()).max_batch_size == 2
