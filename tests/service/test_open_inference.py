"""The Open Inference Protocol (KServe V2) over gRPC on loopback: health and metadata follow the server's own, and
``ModelInfer`` answers one image as a stream's first frame, with the slots and segmentation a stream would get."""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import grpc
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, reference_outputs, run

from service.generated import load_open_inference

inference, inference_grpc = load_open_inference()
FRAME = make_video(seed=21, frames=1)[0]  # uint8 [30, 40, 3]


async def _call(target, method, request, metadata=()):
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_grpc.GRPCInferenceServiceStub(channel)
        return await getattr(stub, method)(request, metadata=metadata)


def _frame_request(frame=FRAME, **fields):
    tensor = inference.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(frame.shape))
    return inference.ModelInferRequest(inputs=[tensor], raw_input_contents=[frame.tobytes()], **fields)


def _outputs(response):
    arrays = {}
    types = {"FP32": "<f4", "INT32": "<i4", "UINT8": "u1"}
    for tensor, data in zip(response.outputs, response.raw_output_contents, strict=True):
        arrays[tensor.name] = np.frombuffer(data, dtype=types[tensor.datatype]).reshape(tuple(tensor.shape))
    return arrays


def test_health_and_metadata_follow_the_server(server):
    async def scenario():
        target = server.target
        return (
            await _call(target, "ServerLive", inference.ServerLiveRequest()),
            await _call(target, "ServerReady", inference.ServerReadyRequest()),
            await _call(target, "ModelReady", inference.ModelReadyRequest(name="")),
            await _call(target, "ModelReady", inference.ModelReadyRequest(name="nope")),
            await _call(target, "ModelReady", inference.ModelReadyRequest(name="tiny", version="not-a-version")),
            await _call(target, "ServerMetadata", inference.ServerMetadataRequest()),
            await _call(target, "ModelMetadata", inference.ModelMetadataRequest(name="tiny")),
        )

    live, ready, model_ready, unknown, other_version, server_meta, model_meta = run(scenario())
    assert live.live and ready.ready and model_ready.ready
    assert not unknown.ready and not other_version.ready
    assert server_meta.name == "slotstream" and server_meta.version and list(server_meta.extensions) == []
    card = server.server._runner.card
    assert model_meta.name == "tiny" and list(model_meta.versions) == [card.version]
    assert model_meta.platform == "slotstream_torch"
    assert [(t.name, t.datatype, list(t.shape)) for t in model_meta.inputs] == [
        ("FRAME", "UINT8", [-1, -1, 3]),
        ("IMAGE", "BYTES", [1]),
    ]
    assert [(t.name, list(t.shape)) for t in model_meta.outputs] == [
        ("SLOTS", [card.num_slots, card.slot_dim]),
        ("SLOT_IDS", [card.num_slots]),
        ("SEGMENTATION", list(card.image_size)),
    ]


def test_an_image_is_answered_as_the_first_frame_of_a_stream(server):
    png = io.BytesIO()
    Image.fromarray(FRAME).save(png, format="PNG")
    image = inference.ModelInferRequest.InferInputTensor(name="IMAGE", datatype="BYTES", shape=[1])
    as_contents = inference.ModelInferRequest(inputs=[image], id="png")
    as_contents.inputs[0].contents.bytes_contents.append(png.getvalue())
    as_raw = inference.ModelInferRequest(
        inputs=[image], raw_input_contents=[struct.pack("<I", len(png.getvalue())) + png.getvalue()]
    )
    batched = inference.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=[1, *FRAME.shape])
    as_batch_of_one = inference.ModelInferRequest(inputs=[batched], raw_input_contents=[FRAME.tobytes()])
    as_values = inference.ModelInferRequest(inputs=[_frame_request().inputs[0]])
    as_values.inputs[0].contents.uint_contents.extend(FRAME.reshape(-1).tolist())
    only_slots = _frame_request(outputs=[inference.ModelInferRequest.InferRequestedOutputTensor(name="SLOTS")])

    async def scenario():
        requests = [_frame_request(id="raw"), as_contents, as_raw, as_batch_of_one, as_values, only_slots]
        return [await _call(server.target, "ModelInfer", request) for request in requests]

    responses = run(scenario())
    slots, segmentation = reference_outputs(server.model_dir, [FRAME])[0]
    for response in responses[:5]:
        outputs = _outputs(response)
        assert list(outputs) == ["SLOTS", "SLOT_IDS", "SEGMENTATION"]
        assert float(np.abs(outputs["SLOTS"] - slots).max()) <= 1e-5
        assert float((outputs["SEGMENTATION"] == segmentation).mean()) >= 0.999
        assert outputs["SLOT_IDS"].tolist() == list(range(slots.shape[0]))
        assert response.model_name == "tiny" and response.model_version == server.server._runner.card.version
    assert [r.id for r in responses[:2]] == ["raw", "png"]
    assert list(_outputs(responses[5])) == ["SLOTS"]
    assert server.metric("slotstream_infer_requests_total", {"model": "tiny", "outcome": "result"}) == 6
    assert server.metric("slotstream_frames_total", {"model": "tiny", "outcome": "result"}) == 0, "not stream frames"


@pytest.mark.parametrize(
    ("request_fields", "status", "message"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "give exactly one input tensor"),
        ({"datatype": "FP32"}, grpc.StatusCode.INVALID_ARGUMENT, "input FRAME must be UINT8"),
        ({"shape": [30, 40]}, grpc.StatusCode.INVALID_ARGUMENT, "must have shape [H, W, 3] or [1, H, W, 3]"),
        ({"shape": [31, 40, 3]}, grpc.StatusCode.INVALID_ARGUMENT, "needs 3720 bytes, got 3600"),
        ({"name": "PIXELS"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown input tensor 'PIXELS'"),
        ({"output": "MASKS"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown output(s) 'MASKS'"),
        ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        ({"model_version": "old"}, grpc.StatusCode.INVALID_ARGUMENT, "is not the current version"),
        ({"image": b"\x89PNG\r\n\x1a\nnot a png"}, grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_IMAGE"),
        ({"both": True}, grpc.StatusCode.INVALID_ARGUMENT, "both in raw_input_contents and in contents"),
        (
            {"sequence": True},
            grpc.StatusCode.INVALID_ARGUMENT,
            "sequence_id, sequence_start: ModelInfer keeps no state",
        ),
        ({"raw_image": b"\x00" * 4096}, grpc.StatusCode.INVALID_ARGUMENT, "must hold one JPEG or PNG file"),
    ],
    ids=[
        "no-input",
        "datatype",
        "shape",
        "size",
        "name",
        "output",
        "model",
        "version",
        "undecodable",
        "raw-and-contents",
        "sequence",
        "many-empty-elements",
    ],
)
def test_requests_that_cannot_run_are_refused_saying_why(server, request_fields, status, message):
    fields = dict(request_fields)
    if "raw_image" in fields:  # 1,024 empty elements, each a zero length prefix
        tensor = inference.ModelInferRequest.InferInputTensor(name="IMAGE", datatype="BYTES", shape=[1])
        request = inference.ModelInferRequest(inputs=[tensor], raw_input_contents=[fields.pop("raw_image")])
    elif fields.pop("both", False):
        request = _frame_request()
        request.inputs[0].contents.uint_contents.extend([1, 2, 3])
    elif fields.pop("sequence", False):
        request = _frame_request()
        request.parameters["sequence_start"].bool_param = True
        request.parameters["sequence_id"].int64_param = 7
    elif "image" in fields:
        tensor = inference.ModelInferRequest.InferInputTensor(name="IMAGE", datatype="BYTES", shape=[1])
        request = inference.ModelInferRequest(inputs=[tensor])
        request.inputs[0].contents.bytes_contents.append(fields.pop("image"))
    elif not fields:
        request = inference.ModelInferRequest()
    else:
        request = _frame_request(
            model_name=fields.pop("model_name", ""), model_version=fields.pop("model_version", "")
        )
        tensor = request.inputs[0]
        tensor.name = fields.get("name", tensor.name)
        tensor.datatype = fields.get("datatype", tensor.datatype)
        if "shape" in fields:
            del tensor.shape[:]
            tensor.shape.extend(fields["shape"])
        if "output" in fields:
            request.outputs.append(inference.ModelInferRequest.InferRequestedOutputTensor(name=fields["output"]))

    async def scenario():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(server.target, "ModelInfer", request)
        return refused.value

    refused = run(scenario())
    assert refused.code() == status and message in refused.details(), refused.details()


def test_the_protocol_needs_the_bearer_token_when_the_server_requires_one(start_server):
    server = start_server(auth_token="client-0123456789abcdefghijklmno")

    async def scenario():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(server.target, "ServerReady", inference.ServerReadyRequest())
        accepted = await _call(
            server.target,
            "ServerReady",
            inference.ServerReadyRequest(),
            metadata=(("authorization", "Bearer client-0123456789abcdefghijklmno"),),
        )
        return refused.value, accepted

    refused, accepted = run(scenario())
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and accepted.ready


def test_the_client_library_does_not_register_the_protocols_messages():
    """tritonclient registers the protocol's messages (package ``inference``) too, and protobuf refuses a second
    definition in one process: importing ``service.client`` must leave them out."""
    code = "import sys, service.client; print(sorted(m for m in sys.modules if 'open_inference' in m))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert shown.stdout.strip() == "[]"
