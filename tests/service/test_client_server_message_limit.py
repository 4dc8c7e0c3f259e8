"""The client library sizes its frames to the server's message limit (its ``--max-message-bytes``, from its model
card) when that is below the client's own, as the ``stream`` command does: a raw frame the server would refuse goes
as PNG, lossless; one that fits no way is refused before it is sent, naming the server's limit. The card is read
once per client, and only for a frame request over 1 MiB (every server takes that much); a read that failed is
tried again for a later such frame, at most once every ``SERVER_LIMIT_RETRY_S``."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run

from service.client import Client, FrameResult, StreamOptions, connection, stream_frames
from service.client.requests import SMALLEST_SERVER_REQUEST_BYTES
from service.client.synthetic import synthetic_frames
from service.config import ConfigError, ServiceConfig
from service.types import Output

ONE_MIB = 1024 * 1024
SIZE = (600, 640)
"""A raw 600x640 frame is 1,152,000 bytes: more than a 1 MiB message carries, though its PNG is a few kB."""
SLOTS = StreamOptions(outputs=frozenset({Output.SLOTS}))


def _noise(height: int, width: int) -> np.ndarray:
    """Noise does not compress: as PNG it is larger than raw."""
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _slots(target: str, frames: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
    """The slots of ``frames`` processed one by one through a client of the default 16 MiB limit, and the server
    limit that client learnt."""

    async def scenario() -> tuple[list[np.ndarray], int | None]:
        async with Client(target) as client:
            stream = await client.open(SLOTS)
            answers = [await stream.process(frame) for frame in frames]
            await stream.close()
            assert all(isinstance(answer, FrameResult) for answer in answers), answers
            return [answer.slots for answer in answers], client.server_max_request_bytes

    return run(scenario())


def describe_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model names of every ``Client.describe`` call from now on (the calls still go to the server)."""
    calls: list[str] = []
    describe = Client.describe

    async def counted(self: Client, model: str = "") -> object:
        calls.append(model)
        return await describe(self, model)

    monkeypatch.setattr(Client, "describe", counted)
    return calls


def test_the_smallest_server_limit_is_the_one_the_client_relies_on():
    """A frame request of at most 1 MiB is sent without asking the server's limit: no server has a lower one."""
    ServiceConfig(max_message_bytes=SMALLEST_SERVER_REQUEST_BYTES)
    with pytest.raises(ConfigError):
        ServiceConfig(max_message_bytes=SMALLEST_SERVER_REQUEST_BYTES - 1)


def test_raw_frames_over_the_servers_limit_go_as_png_with_the_slots_of_raw_frames(start_server, server):
    """A server of 1 MiB messages, a client of 16 MiB: the raw 600x640 frames, which that server refused with
    RESOURCE_EXHAUSTED (ending the stream), go as PNG and get the slots the same frames get sent raw to a server of
    16 MiB messages."""
    small_server = start_server(max_message_bytes=ONE_MIB)
    frames = list(synthetic_frames(2, SIZE))
    as_png, learnt = _slots(small_server.target, frames)
    as_raw, default_limit = _slots(server.target, frames)
    assert learnt == ONE_MIB and default_limit == 16 * ONE_MIB
    for png, raw in zip(as_png, as_raw, strict=True):
        np.testing.assert_array_equal(png, raw)


def test_the_servers_limit_is_read_once_per_client_and_only_for_frames_over_one_mib(start_server, monkeypatch):
    """Small frames never ask for the card; three large ones ask once, whatever their number."""
    server = start_server(max_message_bytes=ONE_MIB)
    calls = describe_calls(monkeypatch)

    async def scenario() -> tuple[int | None, int | None, list[str]]:
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in make_video(seed=91, frames=2):
                await stream.process(frame)
            before = client.server_max_request_bytes
            for frame in synthetic_frames(3, SIZE):
                assert isinstance(await stream.process(frame), FrameResult)
            await stream.close()
            return before, client.server_max_request_bytes, list(calls)

    before, after, asked = run(scenario())
    assert before is None and after == ONE_MIB and asked == [""]


def test_a_refused_read_of_the_servers_limit_is_tried_again_after_a_while(start_server, monkeypatch):
    """A server of 2 MiB messages and two calls at a time, both held by streams (another client's and this one's):
    the ``Describe`` that reads the limit is refused. The limit stays unknown (not "none"), and the next large
    frame does not ask again; once the other client's call is free and the wait is over, a frame of 2.76 MB raw,
    which that server would refuse with RESOURCE_EXHAUSTED (ending the stream), gets the limit read and goes as
    PNG."""
    server = start_server(max_message_bytes=2 * ONE_MIB, max_streams=2, max_calls=2)
    monkeypatch.setattr(connection, "SERVER_LIMIT_RETRY_S", 1.0)
    calls = describe_calls(monkeypatch)
    fitting = list(synthetic_frames(2, SIZE))  # 1,152,000 bytes raw: over 1 MiB, within 2 MiB
    (large,) = synthetic_frames(1, (720, 1280))  # 2,764,800 bytes raw, a few kB as PNG

    async def scenario() -> tuple[list[object], int | None, list[str], object, int | None, list[str]]:
        async with Client(server.target) as other, Client(server.target) as client:
            holding = await other.open()  # the server's other call
            stream = await client.open()
            answers = [await stream.process(frame) for frame in fitting]
            unknown, asked_while_held = client.server_max_request_bytes, list(calls)
            await holding.close()
            await asyncio.sleep(1.2)  # a call is free and the wait over
            answer = await stream.process(large)
            await stream.close()
            return answers, unknown, asked_while_held, answer, client.server_max_request_bytes, list(calls)

    answers, unknown, asked_while_held, answer, learnt, asked = run(scenario())
    assert [type(a) for a in answers] == [FrameResult] * 2 and unknown is None and asked_while_held == [""]
    assert isinstance(answer, FrameResult), answer
    assert learnt == 2 * ONE_MIB and asked == ["", ""]


def test_a_card_the_caller_read_gives_the_limit_without_another_call(start_server, monkeypatch):
    """The ``stream`` command reads the card itself: its frames are sized by it, with no second ``Describe``."""
    server = start_server(max_message_bytes=ONE_MIB)
    calls = describe_calls(monkeypatch)

    async def scenario() -> list[object]:
        async with Client(server.target) as client:
            stream = await client.open()
            await client.describe(stream.opened.model)
            answers = [await stream.process(frame) for frame in synthetic_frames(2, SIZE)]
            await stream.close()
            return answers

    answers = run(scenario())
    assert [type(answer) for answer in answers] == [FrameResult] * 2 and len(calls) == 1, calls


def test_a_frame_that_fits_the_servers_limit_no_way_is_refused_naming_it_and_the_stream_goes_on(start_server):
    """Noise fits neither raw nor as PNG, and JPEG bytes go as they are: both are refused before they are sent
    (they ended the whole stream with the server's RESOURCE_EXHAUSTED), with the server's flag in the message, and
    the stream takes the next frame."""
    server = start_server(max_message_bytes=ONE_MIB)
    jpeg = io.BytesIO()
    Image.fromarray(_noise(1000, 1000)).save(jpeg, format="JPEG", quality=95)
    assert ONE_MIB < len(jpeg.getvalue()) < 16 * ONE_MIB

    async def scenario() -> tuple[list[str], list[int], FrameResult]:
        async with Client(server.target) as client:
            stream = await client.open()
            refusals = []
            for image in (_noise(*SIZE), jpeg.getvalue()):
                with pytest.raises(ValueError) as refused:
                    await stream.send(image)
                refusals.append(str(refused.value))
            unanswered = stream.unanswered
            answer = await stream.process(make_video(seed=92, frames=1)[0])
            await stream.close()
            return refusals, unanswered, answer

    (noise, given), unanswered, answer = run(scenario())
    limit = "more than the server takes in one message (its --max-message-bytes 1,048,576)"
    assert noise.startswith(f"frame 0: the RAW_RGB8 640x600 image is 1,152,000 bytes, {limit}, and "), noise
    assert "bytes as PNG (lossless); send it as JPEG (jpeg_quality=...)" in noise, noise
    assert given.startswith("frame 0: the JPEG image is ") and limit in given, given
    for message in (noise, given):
        assert message.endswith("or raise --max-message-bytes on the server"), message
    assert unanswered == [] and isinstance(answer, FrameResult) and answer.frame_index == 0


def test_stream_frames_sizes_its_frames_to_the_servers_limit(start_server):
    server = start_server(max_message_bytes=ONE_MIB)
    answers = list(stream_frames(server.target, synthetic_frames(3, SIZE)))
    assert [type(answer) for answer in answers] == [FrameResult] * 3
    assert [answer.frame_index for answer in answers] == [0, 1, 2]


def test_frames_keep_the_order_they_were_sent_in_while_one_is_encoded_as_png(server):
    """A large frame encoded as PNG (in a worker thread) and a small one sent right after it by another task: the
    large one still gets the first index, and both are answered."""
    large = next(iter(synthetic_frames(1, (2160, 3840))))  # 24,883,200 bytes raw: over the default 16 MiB
    small = make_video(seed=93, frames=1)[0]

    async def scenario() -> tuple[list[int], list[int]]:
        async with Client(server.target) as client:
            stream = await client.open()
            first = asyncio.create_task(stream.send(large))
            await asyncio.sleep(0)  # the large frame's send() is under way
            indices = [await stream.send(small), await first]
            answers = [await stream.receive() for _ in range(2)]
            await stream.close()
            return indices, [answer.frame_index for answer in answers if isinstance(answer, FrameResult)]

    indices, answered = run(scenario())
    assert indices == [1, 0] and answered == [0, 1]


def test_a_frame_sent_as_png_is_encoded_off_the_event_loop(server):
    """While a 4K frame is encoded as PNG in ``send()``, the event loop keeps running (answers keep being read)."""
    frame = next(iter(synthetic_frames(1, (2160, 3840))))

    async def scenario() -> tuple[float, float]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with Client(server.target) as client:
            stream = await client.open()
            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.01)
            start = time.perf_counter()
            await stream.send(frame)
            took = time.perf_counter() - start
            await asyncio.sleep(0.01)  # the ticker records the gap it is in
            ticker.cancel()
            await stream.close()
            return took, max(gaps)

    took, longest_gap = run(scenario())
    assert longest_gap < took / 3, (longest_gap, took)
