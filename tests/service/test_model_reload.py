"""``Admin.ReloadModel`` over gRPC on loopback: a model update without a restart. Streams open before the reload
keep the version they opened with, bit for bit, until they end; new streams get the new version; the old version
is freed after its last stream; a folder that does not load leaves the server serving the version it had."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import torch
from service_helpers import ADMIN_TOKEN as ADMIN
from service_helpers import (
    HAVE_ONNXRUNTIME,
    SERVICE_TINY_MODEL,
    ServerThread,
    make_config,
    make_video,
    quick_export,
    reference_outputs,
    results_of,
    run,
    wait_until,
)

from service.client import Client, StreamError, StreamOptions
from service.client.__main__ import main
from service.errors import ErrorCode
from service.server import default_engine_factory

LOAD_HELD_S = 30.0
"""How long the slow reload's load is held (released at the test's end): far beyond the answer's bound."""


@pytest.fixture
def versions(model_dir, tmp_path):
    """The served folder (a copy of the tiny model, version 1) and a second version of the same model (other
    weights) to put in its place."""
    from plugins import VideoSlotModel

    served = shutil.copytree(model_dir, tmp_path / "served")
    torch.manual_seed(1)
    second = VideoSlotModel(**SERVICE_TINY_MODEL).save_pretrained(tmp_path / "second")
    return served, tmp_path / "second" if second is None else second


@pytest.fixture
def serve(admin_file):
    """Factory: a server of a folder, with the admin token; stopped after the test."""
    servers = []

    def start(folder):
        servers.append(ServerThread(make_config(folder, admin_token_file=admin_file)).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop(0.5)


def _replace_folder(served, source):
    """Put ``source``'s files in ``served`` as an operator would: a new folder renamed into place."""
    staging = served.parent / "staging"
    shutil.copytree(source, staging)
    shutil.rmtree(served)
    staging.rename(served)


def _matches(results, references):
    for result, (slots, segmentation) in zip(results, references, strict=True):
        assert float(np.abs(result.slots - slots).max()) <= 1e-5
        assert float((result.segmentation == segmentation).mean()) >= 0.999


def test_open_streams_keep_their_version_and_new_streams_get_the_new_one(serve, admin_file, versions):
    served, second = versions
    original = shutil.copytree(served, served.parent / "original")  # the first version's files, for references
    server = serve(served)
    clip = make_video(seed=8, frames=6)

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            old = await client.open()
            before = await results_of(old, clip[:3])
            unchanged = await admin.reload_model()
            _replace_folder(served, second)
            outcome = await admin.reload_model()
            after = await results_of(old, clip[3:])  # the same stream, across the reload
            new = await client.open()
            fresh = await results_of(new, clip)
            card = await client.describe()
            listed = {s.stream_id: s.model_version for s in await admin.list_streams()}
            await old.close()
            await new.close()
            return old, new, before + after, fresh, unchanged, outcome, card, listed

    old, new, old_results, new_results, unchanged, outcome, card, listed = run(scenario())
    assert not unchanged.changed and unchanged.version == unchanged.previous_version == old.opened.model_version
    assert unchanged.streams_on_previous == 0 and unchanged.warm_up_s == 0
    assert outcome.changed and outcome.previous_version == old.opened.model_version
    assert outcome.version == new.opened.model_version == card.version != outcome.previous_version
    assert outcome.streams_on_previous == 1 and outcome.load_s > 0 and outcome.warm_up_s > 0
    assert listed == {old.opened.stream_id: outcome.previous_version, new.opened.stream_id: outcome.version}
    assert {r.model_version for r in old_results} == {outcome.previous_version}
    assert {r.model_version for r in new_results} == {outcome.version}
    _matches(old_results, reference_outputs(original, clip))  # the whole clip on the first version, unbroken
    _matches(new_results, reference_outputs(served, clip))
    assert float(np.abs(old_results[0].slots - new_results[0].slots).max()) > 1e-3, "the versions differ"
    assert server.metric("slotstream_model_reloads_total", {"outcome": "reloaded"}) == 1
    assert server.metric("slotstream_model_reloads_total", {"outcome": "unchanged"}) == 1
    wait_until(lambda: server.gauge("slotstream_model_versions") == 1), "the first version freed after its last stream"


def test_a_reload_that_finds_no_stream_on_the_old_version_frees_it_at_once(serve, admin_file, versions):
    served, second = versions
    server = serve(served)

    async def reload():
        async with Client(server.target, token=ADMIN) as admin:
            assert server.gauge("slotstream_model_versions") == 1
            _replace_folder(served, second)
            return await admin.reload_model()

    outcome = run(reload())
    assert outcome.changed and outcome.streams_on_previous == 0
    assert server.gauge("slotstream_model_versions") == 1


def test_a_folder_that_does_not_load_leaves_the_version_serving(serve, admin_file, versions):
    served, _ = versions
    server = serve(served)
    frame = make_video(seed=9, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            version = (await client.describe()).version
            (served / "config.json").write_text("{ not json")
            with pytest.raises(StreamError) as failed:
                await admin.reload_model()
            stream = await client.open()
            results = await results_of(stream, [frame])
            await stream.close()
            return version, failed.value, results

    version, failed, results = run(scenario())
    assert failed.status == grpc.StatusCode.FAILED_PRECONDITION and failed.code == ErrorCode.MODEL_LOAD_FAILED
    assert "did not load" in failed.message and f"still serving version {version}" in failed.message
    assert results[0].model_version == version
    assert server.metric("slotstream_model_reloads_total", {"outcome": "failed"}) == 1
    assert server.metric("slotstream_calls_refused_total", {"code": "model_load_failed"}) == 1


def test_a_resumed_stream_of_the_old_version_continues_on_it(serve, admin_file, versions):
    served, second = versions
    original = shutil.copytree(served, served.parent / "original")
    server = serve(served)
    clip = make_video(seed=10, frames=4)

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            stream = await client.open(StreamOptions(resume_window_s=30.0))
            first = await results_of(stream, clip[:2])
            _replace_folder(served, second)
            await admin.reload_model()
            resumed = await client.resume(stream.stream_id, stream.opened.resume_token, 1, model="served")
            rest = await results_of(resumed, clip[2:])
            await resumed.close()
            return first + rest

    results = run(scenario())
    _matches(results, reference_outputs(original, clip))


def test_reload_needs_an_admin_token_and_the_command_prints_the_outcome(serve, admin_file, versions, capsys):
    served, second = versions
    server = serve(served)

    async def without_token():
        async with Client(server.target) as client:
            with pytest.raises(StreamError) as refused:
                await client.reload_model()
            return refused.value

    assert run(without_token()).code == ErrorCode.UNAUTHENTICATED
    _replace_folder(served, second)
    assert main(["reload", "--target", server.target, "--token-file", str(admin_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["changed"] is True and printed["model"] == "served"
    assert main(["reload", "--target", server.target, "--token-file", str(admin_file), "--model", "nope"]) == 1
    assert "UNKNOWN_MODEL" in capsys.readouterr().err


def test_a_shutdown_during_a_reload_answers_it_and_leaves_the_load_behind(model_dir, admin_file):
    """The reload's caller is told the server is shutting down (not a bare cancelled call), and the server marks
    the load it could not stop, so the process exits without waiting for it."""
    loads = []
    release = threading.Event()

    def slow_second_load(config):
        loads.append(config)
        if len(loads) > 1:
            release.wait(LOAD_HELD_S)  # a TensorRT build, a slow volume
        return default_engine_factory(config)

    server = ServerThread(make_config(model_dir, admin_token_file=admin_file), slow_second_load).start()
    stopped_at = []

    async def scenario():
        async with Client(server.target, token=ADMIN) as admin:
            reload = asyncio.ensure_future(admin.reload_model())
            await asyncio.sleep(0.5)
            stopping = asyncio.ensure_future(asyncio.to_thread(server.stop, 5.0))
            with pytest.raises(StreamError) as refused:
                await reload
            stopped_at.append(time.monotonic())
            await stopping
            return refused.value

    began = time.monotonic()
    try:
        refused = run(scenario())
    finally:
        release.set()
    assert refused.status == grpc.StatusCode.UNAVAILABLE and refused.code == ErrorCode.SHUTTING_DOWN
    assert "during the reload" in refused.message
    assert stopped_at[0] - began < LOAD_HELD_S / 2, "answered when the shutdown began, not when the load ended"
    assert server.server.warm_up_abandoned, "the load's thread is left behind: the process exits without it"


@pytest.mark.skipif(not HAVE_ONNXRUNTIME, reason="onnxruntime missing (the onnx extra)")
def test_an_onnx_export_is_reloaded_like_a_model(model_dir, exported_model_dir, versions, admin_file, tmp_path):
    """The ONNX backend serves an export folder: a new export put in its place is taken up the same way, and the
    stream opened before keeps the first export's answers."""
    _, second = versions
    served = shutil.copytree(exported_model_dir, tmp_path / "served-onnx")
    second_export = quick_export(second, tmp_path / "second-onnx")
    server = ServerThread(make_config(served, backend="onnx", admin_token_file=admin_file)).start()
    clip = make_video(seed=12, frames=4)
    try:

        async def scenario():
            async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
                old = await client.open()
                before = await results_of(old, clip[:2])
                _replace_folder(served, second_export)
                outcome = await admin.reload_model()
                after = await results_of(old, clip[2:])
                new = await client.open()
                fresh = await results_of(new, clip[:1])
                await old.close()
                await new.close()
                return outcome, before + after, fresh

        outcome, old_results, new_results = run(scenario())
    finally:
        server.stop(0.5)
    assert outcome.changed and outcome.streams_on_previous == 1
    assert {r.model_version for r in old_results} == {outcome.previous_version}
    assert new_results[0].model_version == outcome.version
    references = reference_outputs(model_dir, clip)  # the export's source model
    for result, (slots, _) in zip(old_results, references, strict=True):
        assert float(np.abs(result.slots - slots).max()) <= 1e-4, "the first export, across the reload"


def test_reloading_back_to_a_version_open_streams_run_reuses_it(serve, versions):
    """A rollback while streams still run the old version: the copy they run serves the new streams too, not a
    second copy of the same weights."""
    served, second = versions
    original = shutil.copytree(served, served.parent / "original")
    server = serve(served)
    clip = make_video(seed=14, frames=2)

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            old = await client.open()
            await results_of(old, clip[:1])
            _replace_folder(served, second)
            forward = await admin.reload_model()
            _replace_folder(served, original)
            back = await admin.reload_model()
            new = await client.open()
            await results_of(new, clip[:1])
            runners = server.on_loop(lambda: [s.runner for s in server.server.manager.sessions.values()])
            await old.close()
            await new.close()
            return forward, back, runners

    forward, back, runners = run(scenario())
    assert forward.changed and back.changed and back.version == forward.previous_version
    assert back.warm_up_s == 0, "nothing new to warm up"
    assert runners[0] is runners[1], "the old stream and the new one share the one copy"
    assert server.gauge("slotstream_model_versions") == 1, "the second version, with no stream, was freed"
