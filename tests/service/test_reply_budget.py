"""The server-wide budget of unread replies (``--max-total-buffered-reply-bytes``): the memory limit it is derived
from, the budget's bookkeeping, the configuration's warnings, and a real server refusing a stream it has no room
for while resumes still get in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from service_helpers import make_video, run, wait_until

from service.client import Client, StreamError, StreamOptions
from service.config import ConfigError, ServiceConfig
from service.errors import ErrorCode
from service.host import memory_limit_bytes
from service.reply_budget import ReplyBudget
from service.types import Output

MIB = 1024 * 1024


def test_the_memory_limit_is_the_cgroup_limit_else_the_machine_memory(tmp_path: Path):
    limit, meminfo = tmp_path / "memory.max", tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24592212 kB\nMemFree:         1000 kB\n")
    limit.write_text("2147483648\n")
    assert memory_limit_bytes(limit, meminfo) == 2 * 1024**3
    limit.write_text("max\n")  # no cgroup limit: the machine's memory
    assert memory_limit_bytes(limit, meminfo, tmp_path / "absent") == 24592212 * 1024
    assert memory_limit_bytes(tmp_path / "absent", meminfo, tmp_path / "absent") == 24592212 * 1024
    assert memory_limit_bytes(tmp_path / "absent", tmp_path / "absent", tmp_path / "absent") is None
    v1 = tmp_path / "memory.limit_in_bytes"  # a node on cgroup v1
    v1.write_text("1073741824\n")
    assert memory_limit_bytes(tmp_path / "absent", meminfo, v1) == 1024**3
    v1.write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory_limit_bytes(tmp_path / "absent", meminfo, v1) == 24592212 * 1024


def test_the_budget_grants_what_fits_and_at_least_one_reply():
    """Each stream reserves its window and the two replies gRPC holds, at its reply size."""
    budget = ReplyBudget(30_000)
    assert budget.reserve(3_000, wanted=2) == 2  # all it wanted: (2 + 2) x 3,000
    assert budget.reserve(3_000, wanted=5) == 4  # the room left, 18,000 bytes: 6 replies, 2 of them gRPC's
    assert (budget.reserved_bytes, budget.free_bytes) == (30_000, 0)
    budget.release(9_000)
    assert not budget.has_room_for(3_001) and budget.has_room_for(3_000)  # a window of one needs 3 replies
    assert budget.reserve(3_000, wanted=5) == 1
    assert budget.reserve(3_000, wanted=5) == 1, "one reply at least: a resumed stream is never left without"
    assert (budget.reserved_bytes, budget.free_bytes) == (39_000, 0)
    budget.release(18_000)
    assert (budget.reserved_bytes, budget.free_bytes) == (21_000, 9_000)
    with pytest.raises(ValueError, match="at least 1 byte"):
        ReplyBudget(0)


def test_the_automatic_budget_is_a_quarter_of_the_memory_limit():
    assert ServiceConfig().reply_budget_bytes(memory_limit=2 * 1024**3) == 512 * MIB
    explicit = ServiceConfig(max_total_buffered_reply_bytes=5 * MIB, max_message_bytes=MIB)
    assert explicit.reply_budget_bytes(2 * 1024**3) == 5 * MIB
    # never below room for one stream of the largest replies: a window of one and the two in gRPC's hands
    assert ServiceConfig(max_message_bytes=16 * MIB).reply_budget_bytes(memory_limit=32 * MIB) == 48 * MIB
    for refused in (-1, 3 * 8 * MIB - 1):
        with pytest.raises(ConfigError, match="--max-total-buffered-reply-bytes must be 0 \\(auto\\) or at least"):
            ServiceConfig(max_total_buffered_reply_bytes=refused, max_message_bytes=8 * MIB)
    assert ServiceConfig(max_total_buffered_reply_bytes=3 * 8 * MIB, max_message_bytes=8 * MIB)


def test_a_configuration_that_could_outgrow_the_memory_limit_is_warned_about():
    pod = 2 * 1024**3
    # 72 calls (64 streams + 8) x 16 MiB messages (1152 MiB) + 512 MiB of replies: more than half of 2 GiB
    (warning,) = ServiceConfig(max_streams=64).memory_warnings(memory_limit=pod)
    assert "--max-message-bytes" in warning and "1152 MiB" in warning and "2048 MiB" in warning
    # every call counts, not only the streams: 72 x 8 MiB + 512 MiB is more than half the pod
    assert ServiceConfig(max_streams=64, max_message_bytes=8 * MIB).memory_warnings(memory_limit=pod) != []
    # 72 x 8 MiB + 448 MiB of replies = 1 GiB, half the pod (the deploy base sets 416 MiB)
    half = ServiceConfig(max_streams=64, max_message_bytes=8 * MIB, max_total_buffered_reply_bytes=448 * MIB)
    assert half.memory_warnings(memory_limit=pod) == []
    assert ServiceConfig().memory_warnings(memory_limit=64 * 1024**3) == []
    # the Admin service's own calls count too when it is on: 76 x 8 MiB + 416 MiB is more than half the pod
    admin = ServiceConfig(
        max_streams=64,
        max_message_bytes=8 * MIB,
        max_total_buffered_reply_bytes=448 * MIB,
        admin_token_file=Path("admin-tokens.txt"),
    )
    (warning,) = admin.memory_warnings(memory_limit=pod)
    assert "and 4 Admin calls" in warning and "608 MiB" in warning


_BIG_REPLIES = StreamOptions(outputs=frozenset({Output.SOFT_MASKS}), mask_size=(400, 400), resume_window_s=30)


def test_a_new_stream_without_room_for_a_reply_is_refused_and_a_resume_is_not(start_server):
    """Streams asking for large soft masks reserve room for the replies they may hold (their window and the two
    gRPC holds); once the budget has no room for one more, a new stream is refused TOO_MANY_STREAMS naming the
    budget, while a stream coming back (a resume) still gets in; a stream's call that ends gives its room back."""
    bound = 4 * 400 * 400 * 4 + 16 * 1024  # float32 soft masks of the test model's 4 slots, with room for the rest
    budget = int(4.5 * bound)  # a window of 2 replies and gRPC's 2, then half a reply left
    server = start_server(max_total_buffered_reply_bytes=budget, max_message_bytes=3 * MIB)
    frame = make_video(seed=3, frames=1)[0]

    def reserved() -> float:
        return server.gauge("slotstream_reply_budget_reserved_bytes")

    async def scenario():
        async with Client(server.target) as client:
            first = await client.open(_BIG_REPLIES)
            reply_bytes = first.opened.max_reply_bytes
            assert reply_bytes <= bound
            assert reserved() == 4 * reply_bytes  # a window of 2, and 2 in transit
            await first.process(frame)
            with pytest.raises(StreamError) as refused:
                await client.open(_BIG_REPLIES)
            small = await client.open(StreamOptions())  # a small reply still fits in what is left
            await small.close()
            first.cancel()  # detached for its resume window: its call's reservation is given back
            await asyncio.to_thread(wait_until, lambda: reserved() == 0, 10)
            second = await client.open(_BIG_REPLIES)  # takes the whole budget
            await second.process(frame)
            await first.reconnect()  # a resume is not refused, and gets one reply
            after_resume = reserved()
            await first.process(frame)
            await first.close()
            await second.close()
            return refused.value, reply_bytes, after_resume

    refused, reply_bytes, after_resume = run(scenario(), timeout=60)
    assert refused.code == ErrorCode.TOO_MANY_STREAMS and refused.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-total-buffered-reply-bytes" in refused.message and str(reply_bytes) in refused.message
    assert after_resume == 7 * reply_bytes, "the resumed stream got a window of one beyond the budget"
    assert server.gauge("slotstream_reply_budget_bytes") == budget
    assert server.metric("slotstream_open_rejected_total", {"code": "too_many_streams"}) == 1
    wait_until(lambda: reserved() == 0, 10)
