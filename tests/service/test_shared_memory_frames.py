"""Frames through shared memory (``--shared-memory``): a same-host client's frames read from POSIX shared memory
give the results of the same frames sent as bytes; references a server does not read are answered
``SHARED_MEMORY_UNAVAILABLE``, saying why, and the stream goes on."""

from __future__ import annotations

import json
import os
import secrets
import socket
from multiprocessing import shared_memory

import numpy as np
import pytest
from service_helpers import make_video, reference_outputs, run

from service.bench.load import main as bench_main
from service.client import Client, FrameError, FrameResult
from service.client.__main__ import main
from service.client.shared_frames import SharedFrameRing, with_bytes
from service.errors import ErrorCode
from service.shared_memory import SharedMemoryFrames, is_local_peer, shared_memory_supported
from service.types import EncodedImage, ImageEncoding, SharedMemoryRef

pytestmark = pytest.mark.skipif(
    not shared_memory_supported(), reason="POSIX shared memory in /dev/shm is Linux's; this host has none"
)


def _assert_reference(answers: list[object], reference: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert len(answers) == len(reference)
    for answer, (slots, segmentation) in zip(answers, reference, strict=True):
        assert isinstance(answer, FrameResult), answer
        assert answer.slots is not None and answer.segmentation is not None
        np.testing.assert_array_equal(answer.slots, slots)
        np.testing.assert_array_equal(answer.segmentation, segmentation)


def _exchange(target: str, images: list[object]) -> list[object]:
    async def scenario():
        async with Client(target) as client:
            stream = await client.open()
            answers = []
            for image in images:
                await stream.send(image)
                answers.append(await stream.receive())
            await stream.close()
            return answers

    return run(scenario())


def test_frames_in_shared_memory_give_the_results_of_the_same_frames_sent_as_bytes(start_server):
    server = start_server(shared_memory=True)
    clip = make_video(seed=21, frames=6)

    async def card():
        async with Client(server.target) as client:
            return await client.describe()

    assert run(card()).shared_memory, "a loopback client of a --shared-memory server may send frames so"
    with SharedFrameRing(clip[0].shape[:2], slots=2) as ring:  # one frame in flight: two slots are enough
        answers = []

        async def scenario():
            async with Client(server.target) as client:
                stream = await client.open()
                for frame in clip:
                    await stream.send(ring.put(frame))
                    answers.append(await stream.receive())
                await stream.close()

        run(scenario())
    _assert_reference(answers, reference_outputs(server.model_dir, clip))
    assert not os.path.exists(f"/dev/shm/{ring.name}"), "closing the ring removes its segment"


def test_a_server_without_shared_memory_refuses_such_frames_and_the_frame_may_be_sent_again(server):
    frame = make_video(seed=22, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client:
            card = await client.describe()
            stream = await client.open()
            with SharedFrameRing(frame.shape[:2]) as ring:
                await stream.send(ring.put(frame))
                refused = await stream.receive()
            await stream.send(frame, frame_index=refused.frame_index)  # a refused frame does not count
            answer = await stream.receive()
            await stream.close()
            return card, refused, answer

    card, refused, answer = run(scenario())
    assert not card.shared_memory
    assert isinstance(refused, FrameError) and refused.code == ErrorCode.SHARED_MEMORY_UNAVAILABLE
    assert "start it with --shared-memory" in refused.message
    assert isinstance(answer, FrameResult) and answer.frame_index == 0


def test_references_the_server_does_not_read_are_refused_saying_why(start_server, tmp_path):
    server = start_server(shared_memory=True)
    frame = make_video(seed=23, frames=1)[0]
    height, width = frame.shape[:2]
    with SharedFrameRing((height, width), slots=2) as ring:
        good = ring.put(frame)
        assert good.shared_memory is not None
        link = f"/dev/shm/slotstream_link_{secrets.token_hex(4)}"
        os.symlink(f"/dev/shm/{ring.name}", link)
        other = shared_memory.SharedMemory(name=f"otherprogram_{secrets.token_hex(4)}", create=True, size=4096)
        hard_link = f"/dev/shm/slotstream_hard_{secrets.token_hex(4)}"
        os.link(f"/dev/shm/{other.name.lstrip('/')}", hard_link)  # a name we read for another program's segment
        fifo = f"/dev/shm/slotstream_fifo_{secrets.token_hex(4)}"
        os.mkfifo(fifo)
        shrunk = shared_memory.SharedMemory(name=f"slotstream_shrunk_{secrets.token_hex(4)}", create=True, size=4096)
        os.truncate(f"/dev/shm/{shrunk.name.lstrip('/')}", 100)  # made smaller after the client wrote it
        try:

            def ref(name: str = ring.name, offset: int = 0, size: int = good.shared_memory.size) -> EncodedImage:
                return EncodedImage(ImageEncoding.RAW_RGB8, b"", height, width, 3, SharedMemoryRef(name, offset, size))

            cases = {
                "is not a segment name this server reads": ref(name="other_segment"),
                "no shared memory segment 'slotstream_missing'": ref(name="slotstream_missing"),
                "which holds": ref(offset=good.shared_memory.size * 2),
                "cannot be opened": ref(name=os.path.basename(link)),
                "sets both data": EncodedImage(
                    ImageEncoding.RAW_RGB8, frame.tobytes(), height, width, 3, good.shared_memory
                ),
                "has 2 names (hard links)": ref(name=os.path.basename(hard_link)),
                "is not a plain file": ref(name=os.path.basename(fifo)),  # and opening it does not wait for a writer
                "which holds 100 bytes": ref(name=shrunk.name.lstrip("/")),  # read, not mapped: no SIGBUS
                "a frame takes 1 to": ref(size=10**12),  # never allocated
            }
            answers = _exchange(server.target, [*cases.values(), good])
        finally:
            os.unlink(link)
            os.unlink(hard_link)
            other.close()
            other.unlink()
            os.unlink(fifo)
            shrunk.close()
            shrunk.unlink()
    for fragment, answer in zip(cases, answers, strict=False):
        assert isinstance(answer, FrameError) and answer.code == ErrorCode.SHARED_MEMORY_UNAVAILABLE, answer
        assert fragment in answer.message, answer.message
    assert isinstance(answers[-1], FrameResult), "the stream went on"


def test_a_segment_made_again_under_its_name_is_read_anew(start_server):
    """The server keeps a segment mapped between frames; when the name is removed and made again (another file),
    the next frame is read from the new one, not the old mapping."""
    server = start_server(shared_memory=True)
    clip = make_video(seed=24, frames=2)
    name = f"slotstream_remade_{secrets.token_hex(4)}"
    size = clip[0].nbytes
    height, width = clip[0].shape[:2]
    image = EncodedImage(ImageEncoding.RAW_RGB8, b"", height, width, 3, SharedMemoryRef(name, 0, size))
    answers = []

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in clip:
                segment = shared_memory.SharedMemory(name=name, create=True, size=size)
                try:
                    assert segment.buf is not None
                    segment.buf[:size] = frame.tobytes()
                    await stream.send(image)
                    answers.append(await stream.receive())
                finally:
                    segment.close()
                    segment.unlink()
            await stream.close()

    run(scenario())
    _assert_reference(answers, reference_outputs(server.model_dir, clip))


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("ipv4:127.0.0.1:50000", True),
        ("ipv4:127.3.2.1:50000", True),
        ("ipv6:[::1]:50000", True),
        ("ipv6:[::ffff:127.0.0.1]:50000", True),
        ("unix:/tmp/slotstream.sock", True),
        ("ipv4:10.0.0.5:50000", False),
        ("ipv6:[2001:db8::1]:50000", False),
        ("ipv6:[::ffff:10.0.0.5]:50000", False),
        ("unknown", False),
    ],
)
def test_only_calls_from_this_host_are_local(peer, local):
    assert is_local_peer(peer) is local


def test_a_call_from_another_host_is_refused_naming_its_address():
    reader = SharedMemoryFrames(True, "ipv4:10.0.0.5:50000", 1 << 20)
    image = EncodedImage(ImageEncoding.RAW_RGB8, b"", 2, 2, 3, SharedMemoryRef("slotstream_x", 0, 12))
    with pytest.raises(Exception, match=r"this call came from ipv4:10\.0\.0\.5:50000") as refused:
        reader.resolve(image)
    assert refused.value.code == ErrorCode.SHARED_MEMORY_UNAVAILABLE


def test_stream_command_sends_through_shared_memory_when_the_server_reads_it(start_server, server, tmp_path, capsys):
    sharing = start_server(shared_memory=True)
    jsonl = tmp_path / "answers.jsonl"
    before = set(os.listdir("/dev/shm"))
    assert main(["stream", "synthetic:5", "--target", sharing.target, "--shared-memory", "--jsonl", str(jsonl)]) == 0
    assert [line.count('"outcome": "result"') for line in jsonl.read_text().splitlines()] == [1] * 5
    assert set(os.listdir("/dev/shm")) <= before, "the run removes its segment"
    assert main(["stream", "synthetic:5", "--target", server.target, "--shared-memory"]) == 2
    assert "the server does not read shared memory for this client" in capsys.readouterr().err
    assert main(["stream", "synthetic:5", "--target", sharing.target, "--shared-memory", "--jpeg-quality", "80"]) == 2
    assert "--shared-memory sends raw frames" in capsys.readouterr().err


def test_the_ring_refuses_frames_of_another_shape():
    with SharedFrameRing((4, 6), slots=2) as ring:
        with pytest.raises(ValueError, match="does not fit this ring's slots"):
            ring.put(np.zeros((6, 4, 3), np.uint8))
        assert ring.put(np.zeros((4, 6, 3), np.uint8)).shared_memory == SharedMemoryRef(ring.name, 0, 72)
        assert ring.put(np.zeros((4, 6, 3), np.uint8)).shared_memory == SharedMemoryRef(ring.name, 72, 72)
        assert ring.put(np.zeros((4, 6, 3), np.uint8)).shared_memory == SharedMemoryRef(ring.name, 0, 72)


def test_a_frame_in_an_open_ring_can_be_had_with_its_pixels_in_the_request():
    """What a reconnect re-sends to a server that does not read shared memory: the same pixels as bytes; a frame of
    a ring already closed, or sent as bytes already, stays as it is."""
    frames = make_video(seed=5, frames=3)
    with SharedFrameRing(frames[0].shape[:2], slots=2) as ring:
        first, second = ring.put(frames[0]), ring.put(frames[1])
        unshared = with_bytes(second)
        assert unshared.shared_memory is None and unshared.data == frames[1].tobytes()
        assert (unshared.height, unshared.width, unshared.channels) == (second.height, second.width, 3)
        assert with_bytes(first).data == frames[0].tobytes()
    assert with_bytes(first) is first, "a closed ring's frame is left for the server to refuse"
    as_bytes = EncodedImage(ImageEncoding.RAW_RGB8, frames[2].tobytes(), 64, 64, 3)
    assert with_bytes(as_bytes) is as_bytes


def test_the_transport_comparison_times_both_ways_side_by_side(start_server, server, tmp_path, capsys):
    sharing = start_server(shared_memory=True)
    out = tmp_path / "transport.json"
    assert (
        bench_main(
            [
                "--target",
                sharing.target,
                "--compare-shared-memory",
                "--size",
                "48x64",
                "--frames",
                "4",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    compared = json.loads(out.read_text())["shared_memory_comparison"]
    assert compared["frame_shape"] == [48, 64, 3] and compared["frames"] == 4
    for kind in ("bytes", "shared_memory"):
        assert compared[kind]["latency_ms"]["count"] == 4 and compared[kind]["server_total_ms"]["count"] == 4
    ratio = compared["shared_memory"]["latency_ms"]["p50"] / compared["bytes"]["latency_ms"]["p50"]
    assert compared["ratio_p50"] == round(ratio, 3)
    assert "through shared memory" in capsys.readouterr().err
    assert bench_main(["--target", server.target, "--compare-shared-memory", "--size", "48x64", "--frames", "4"]) == 2
    assert "does not read shared memory for this client" in capsys.readouterr().err


def _outward_address() -> str | None:
    """One of this host's IPv4 addresses other than loopback, or ``None`` when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 9))  # no packet is sent: this only picks the outgoing interface
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_call_that_does_not_come_over_loopback_gets_no_shared_memory(start_server):
    """The same server, reached over one of this host's other addresses: Describe says no, and a reference is
    refused naming where the call came from."""
    address = _outward_address()
    if address is None:
        pytest.skip("this host has no IPv4 address besides loopback to reach the server over")
    server = start_server(shared_memory=True, listen="0.0.0.0:0")
    target = f"{address}:{server.server.port}"
    frame = make_video(seed=25, frames=1)[0]

    async def scenario():
        async with Client(target) as client:
            card = await client.describe()
            stream = await client.open()
            with SharedFrameRing(frame.shape[:2], slots=2) as ring:
                await stream.send(ring.put(frame))
                answer = await stream.receive()
            await stream.close()
            return card, answer

    card, answer = run(scenario())
    assert not card.shared_memory
    assert isinstance(answer, FrameError) and answer.code == ErrorCode.SHARED_MEMORY_UNAVAILABLE
    assert f"this call came from ipv4:{address}:" in answer.message


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--streams", "4", "--live"], "--streams, --live"),
        (["--window", "4", "--fps", "10"], "--fps, --window"),
        (["--max-staleness-s", "0.5", "--mask-size", "32"], "--max-staleness-s, --mask-size"),
        (["--jpeg-quality", "80"], "--jpeg-quality"),
    ],
)
def test_the_transport_comparison_refuses_the_load_flags_it_would_not_use(flags, named, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--compare-shared-memory", *flags])
    assert exited.value.code == 2
    assert f"it takes no {named}" in capsys.readouterr().err


def test_the_transport_comparison_of_a_frame_too_large_for_bytes_suggests_no_jpeg(capsys):
    with pytest.raises(SystemExit):
        bench_main(["--target", "127.0.0.1:1", "--compare-shared-memory", "--size", "2500x2500"])
    error = capsys.readouterr().err.splitlines()[-1]  # after the usage lines
    assert error.endswith("give a smaller --size") and "--jpeg-quality" not in error, error
