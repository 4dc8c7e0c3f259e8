"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService`` (``proto/inference/``).

Health and metadata follow the server's own (readiness, liveness, the model card); ``ModelInfer`` runs one image
through the model as a stream's first frame, batched with the streams' frames by the model's runner, and keeps no
state. The protocol's tensors: input ``FRAME`` (raw RGB) or ``IMAGE`` (a JPEG or PNG file), outputs ``SLOTS``,
``SLOT_IDS`` and ``SEGMENTATION`` (the proto's comments give their types and shapes).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from service.batcher import BatcherClosed
from service.errors import ErrorCode, FrameRejected, StreamAbort
from service.generated import load_open_inference
from service.images import fit_frame
from service.postprocess import MaskRequest, mask_outputs
from service.runner import StepJob
from service.sessions import SessionManager
from service.types import EncodedImage, ImageEncoding

SERVER_NAME = "slotstream"
OPEN_INFERENCE_SERVICE = "inference.GRPCInferenceService"
"""The protocol's gRPC service name."""
FRAME, IMAGE = "FRAME", "IMAGE"
SLOTS, SLOT_IDS, SEGMENTATION = "SLOTS", "SLOT_IDS", "SEGMENTATION"
OUTPUTS = (SLOTS, SLOT_IDS, SEGMENTATION)
"""The outputs ``ModelInfer`` gives, in the order it gives them."""
_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
_SEQUENCE_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end"})
"""Triton's parameters for a request of a stateful sequence, which this stateless call refuses."""


@dataclass(frozen=True)
class ServerHealth:
    """How the server stands, as the protocol's health calls report it.

    Attributes:
        live: whether the server is live (its liveness health service's status).
        ready: whether it is ready (its readiness).
    """

    live: Callable[[], bool]
    ready: Callable[[], bool]


class InferRequestError(ValueError):
    """A ``ModelInfer`` request that cannot be run; the message says what is wrong with it."""


def _version() -> str:
    try:
        return importlib.metadata.version("slotstream")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def input_image(request: Any) -> EncodedImage:
    """The image of a ``ModelInferRequest``: its one input tensor, ``FRAME`` or ``IMAGE`` (see the proto). The sizes
    are checked before the data is read, so a malformed request costs little whatever its size (it runs on a decode
    thread all the same).

    Raises:
        InferRequestError: no input, more than one, an unknown name or type, a shape or a data size that does not
            match, data given both raw and as contents, Triton's sequence parameters (this is stateless).
    """
    sequence = sorted(set(request.parameters) & _SEQUENCE_PARAMETERS)
    if sequence:
        raise InferRequestError(
            f"parameter(s) {', '.join(sequence)}: ModelInfer keeps no state between requests; send a video's frames "
            "on one slotstream.v1.Perception/Stream instead"
        )
    if len(request.inputs) != 1:
        raise InferRequestError(f"give exactly one input tensor, {FRAME} or {IMAGE}; got {len(request.inputs)}")
    tensor = request.inputs[0]
    raw = request.raw_input_contents
    if len(raw) > 1:
        raise InferRequestError(f"raw_input_contents holds {len(raw)} entries for one input tensor")
    contents = tensor.contents
    if raw and (contents.uint_contents or contents.bytes_contents):
        raise InferRequestError(f"input {tensor.name!r} has its data both in raw_input_contents and in contents")
    shape = list(tensor.shape)
    if tensor.name == FRAME:
        if tensor.datatype != "UINT8":
            raise InferRequestError(f"input {FRAME} must be UINT8, got {tensor.datatype or 'no datatype'}")
        sides = shape[1:] if len(shape) == 4 and shape[0] == 1 else shape
        if len(sides) != 3 or sides[2] != 3 or min(sides) < 1:
            raise InferRequestError(f"input {FRAME} must have shape [H, W, 3] or [1, H, W, 3], got {shape}")
        height, width, _ = sides
        given = len(raw[0]) if raw else len(contents.uint_contents)
        if given != height * width * 3:
            raise InferRequestError(f"input {FRAME} of shape {shape} needs {height * width * 3} bytes, got {given}")
        data = raw[0] if raw else _uint8_contents(contents.uint_contents)
        return EncodedImage(ImageEncoding.RAW_RGB8, bytes(data), height, width, 3)
    if tensor.name == IMAGE:
        if tensor.datatype != "BYTES":
            raise InferRequestError(f"input {IMAGE} must be BYTES, got {tensor.datatype or 'no datatype'}")
        if shape not in ([1], [1, 1]):
            raise InferRequestError(f"input {IMAGE} must have shape [1] or [1, 1] (one file), got {shape}")
        if not raw and len(contents.bytes_contents) != 1:
            raise InferRequestError(
                f"input {IMAGE} must hold one JPEG or PNG file, got {len(contents.bytes_contents)} elements"
            )
        data = _one_length_prefixed(raw[0]) if raw else contents.bytes_contents[0]
        encoding = (
            ImageEncoding.PNG if data.startswith(_PNG) else ImageEncoding.JPEG if data.startswith(_JPEG) else None
        )
        if encoding is None:
            raise InferRequestError(f"input {IMAGE} is neither a JPEG nor a PNG file (by its first bytes)")
        return EncodedImage(encoding, data)
    raise InferRequestError(f"unknown input tensor {tensor.name!r}: give {FRAME} (UINT8 [H, W, 3]) or {IMAGE} (BYTES)")


def _uint8_contents(values: Any) -> bytes:
    """``uint_contents`` as bytes, each value checked to be a byte."""
    array = np.asarray(values, dtype=np.uint64)
    if array.size and int(array.max()) > 255:
        raise InferRequestError(f"input {FRAME} holds values above 255 in uint_contents")
    return array.astype(np.uint8).tobytes()


def _one_length_prefixed(data: bytes) -> bytes:
    """The one element of a raw BYTES tensor: a 4-byte little-endian length, then that many bytes, and nothing
    after them.

    Raises:
        InferRequestError: the data ends early, or holds more than that element.
    """
    if len(data) < 4:
        raise InferRequestError(f"input {IMAGE}: its raw data ends inside its element's 4-byte length")
    (length,) = struct.unpack_from("<I", data)
    if 4 + length != len(data):
        raise InferRequestError(
            f"input {IMAGE} must hold one JPEG or PNG file: its raw data holds {len(data)} bytes, where one element "
            f"of the {length} bytes its length prefix gives takes {4 + length}"
        )
    return data[4:]


def requested_outputs(request: Any) -> tuple[str, ...]:
    """The outputs a request asks for, in :data:`OUTPUTS` order (all when it names none).

    Raises:
        InferRequestError: an output this model does not give.
    """
    names = [output.name for output in request.outputs]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise InferRequestError(f"unknown output(s) {', '.join(map(repr, unknown))}: choose from {', '.join(OUTPUTS)}")
    return tuple(name for name in OUTPUTS if not names or name in names)


class OpenInferenceServicer:
    """Implements ``inference.GRPCInferenceService`` over the session manager's models.

    Args:
        manager: the session manager (its runners and limits).
        health: the server's liveness and readiness.
        decode_executor: where images are decoded.
        max_image_pixels: the largest image accepted (``--max-image-pixels``).
        check_jpeg_data: refuse JPEG files whose data libjpeg finds damaged (``--jpeg-damage-check``).
        on_infer: called with the model's name and ``"result"`` or ``"error"`` for each ``ModelInfer`` answered.
    """

    def __init__(
        self,
        manager: SessionManager,
        health: ServerHealth,
        decode_executor: Executor,
        *,
        max_image_pixels: int,
        check_jpeg_data: bool = True,
        on_infer: Callable[[str, str], None] | None = None,
    ) -> None:
        self._manager = manager
        self._health = health
        self._decode_executor = decode_executor
        self._max_image_pixels = max_image_pixels
        self._check_jpeg_data = check_jpeg_data
        self._on_infer = on_infer
        self._pb = load_open_inference()[0]

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerLiveResponse(live=self._health.live())

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerReadyResponse(ready=self._health.ready())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        try:
            runner = self._manager.runner(request.name)
        except StreamAbort:
            return self._pb.ModelReadyResponse(ready=False)
        versions = self._versions(runner.card.name)
        ready = self._health.ready() and (not request.version or request.version in versions)
        return self._pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerMetadataResponse(name=SERVER_NAME, version=_version(), extensions=[])

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        card = await self._card(request.name, context)
        tensor = self._pb.ModelMetadataResponse.TensorMetadata
        height, width = card.image_size
        return self._pb.ModelMetadataResponse(
            name=card.name,
            versions=self._versions(card.name),
            platform=f"slotstream_{card.backend}",
            inputs=[
                tensor(name=FRAME, datatype="UINT8", shape=[-1, -1, 3]),
                tensor(name=IMAGE, datatype="BYTES", shape=[1]),
            ],
            outputs=[
                tensor(name=SLOTS, datatype="FP32", shape=[card.num_slots, card.slot_dim]),
                tensor(name=SLOT_IDS, datatype="INT32", shape=[card.num_slots]),
                tensor(name=SEGMENTATION, datatype="UINT8", shape=[height, width]),
            ],
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        card = await self._card(request.model_name, context)
        runner = self._manager.runner(card.name)
        loop = asyncio.get_running_loop()
        try:
            if not self._health.ready():
                self._count(card.name, "error")
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, "the server is not ready (starting, or shutting down)"
                )
            if request.model_version and request.model_version != card.version:
                raise InferRequestError(
                    f"model_version {request.model_version!r} is not the current version {card.version!r}, which a "
                    "request without state always gets: leave model_version empty"
                )
            outputs = requested_outputs(request)
            image = await loop.run_in_executor(self._decode_executor, input_image, request)
            fit = self._manager.limits.frame_fit_for(card)
            fitted = await loop.run_in_executor(
                self._decode_executor,
                fit_frame,
                image,
                card.image_size,
                self._max_image_pixels,
                fit,
                self._check_jpeg_data,
            )
            masks = MaskRequest(card.image_size, segmentation=SEGMENTATION in outputs, view=fitted.view)
            # A key of its own: no other job shares it, so the runner treats it as a stream's first frame.
            timed = await runner.run(object(), StepJob(fitted.pixels, None, masks, f"infer:{request.id}"))
        except InferRequestError as error:
            self._count(card.name, "error")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise  # not reached: the abort ends the call
        except FrameRejected as rejected:  # an image it cannot decode or take, or a model call that failed
            self._count(card.name, "error")
            failed = rejected.code == ErrorCode.INFERENCE_FAILED
            status = grpc.StatusCode.INTERNAL if failed else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(status, f"{rejected.code.name}: {rejected.message}")
            raise  # not reached
        except BatcherClosed:
            self._count(card.name, "error")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            raise  # not reached
        step = timed.result
        values: dict[str, np.ndarray] = {
            SLOTS: np.ascontiguousarray(step.slots, dtype="<f4"),  # [K, D]
            SLOT_IDS: np.arange(card.num_slots, dtype="<i4"),  # [K]
        }
        if SEGMENTATION in outputs:
            made = step.masks
            if made is None:  # a large mask, made off the model call
                assert step.model_masks is not None
                # model masks [K, h, w] -> [1, K, h, w]: a batch of one
                (made,) = await loop.run_in_executor(
                    self._decode_executor, mask_outputs, step.model_masks[None], [masks]
                )
            assert made.segmentation is not None
            values[SEGMENTATION] = made.segmentation  # [H, W]
        types = {SLOTS: "FP32", SLOT_IDS: "INT32", SEGMENTATION: "UINT8"}
        tensor = self._pb.ModelInferResponse.InferOutputTensor
        self._count(card.name, "result")
        return self._pb.ModelInferResponse(
            model_name=card.name,
            model_version=card.version,
            id=request.id,
            outputs=[tensor(name=name, datatype=types[name], shape=list(values[name].shape)) for name in outputs],
            raw_output_contents=[values[name].tobytes() for name in outputs],
        )

    def _versions(self, model: str) -> list[str]:
        """The versions of ``model`` in service: the current one first, then those open streams still run."""
        current = self._manager.runners[model].card.version
        others = {s.model_version for s in self._manager.sessions.values() if s.model == model} - {current}
        return [current, *sorted(others)]

    async def _card(self, model: str, context: grpc.aio.ServicerContext) -> Any:
        """The current card of ``model`` (``""``: the default); an unknown model ends the call with NOT_FOUND (not
        counted: a name a client made up must not become a metric label)."""
        try:
            return self._manager.runner(model).card
        except StreamAbort as abort:
            await context.abort(grpc.StatusCode.NOT_FOUND, abort.message)

    def _count(self, model: str, outcome: str) -> None:
        if self._on_infer is not None:
            self._on_infer(model, outcome)
