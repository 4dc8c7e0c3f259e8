"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService`` (``proto/inference/``).

Health and metadata follow the server's own (readiness, liveness, the model card); ``ModelInfer`` runs one image
through the model as a stream's first frame (sharing model calls with other such requests and streams' first
frames), and keeps no state. The protocol's tensors: input ``FRAME`` (raw RGB) or ``IMAGE`` (a JPEG or PNG file),
outputs ``SLOTS``, ``SLOT_IDS`` and ``SEGMENTATION`` (the proto's comments give their types and shapes), read and
chosen by :mod:`service.open_inference_inputs`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from service.batcher import BatcherClosed
from service.engine import ModelCard
from service.errors import ErrorCode, FrameRejected, StreamAbort
from service.frame_processing import step_mask_outputs
from service.generated import load_open_inference
from service.images import FittedFrame, fit_frame
from service.open_inference_inputs import (
    FRAME,
    IMAGE,
    OUTPUT_DATATYPES,
    SEGMENTATION,
    SLOT_IDS,
    SLOTS,
    InferRequestError,
    input_image,
    requested_outputs,
)
from service.postprocess import MaskRequest
from service.runner import ModelRunner, StepJob
from service.sessions import SessionManager
from service.types import FrameFit

SERVER_NAME = "slotstream"
OPEN_INFERENCE_SERVICE = "inference.GRPCInferenceService"
"""The protocol's gRPC service name."""


@dataclass(frozen=True)
class ServerHealth:
    """How the server stands, as the protocol's health calls report it.

    Attributes:
        live: whether the server is live (its liveness health service's status).
        ready: whether it is ready (its readiness).
    """

    live: Callable[[], bool]
    ready: Callable[[], bool]


def _version() -> str:
    try:
        return importlib.metadata.version("slotstream")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class OpenInferenceServicer:
    """Implements ``inference.GRPCInferenceService`` over the session manager's models.

    Args:
        manager: the session manager (its runners and limits).
        health: the server's liveness and readiness.
        versions: the served model's versions in memory, the current one first (``ModelVersions.runners``).
        decode_executor: where images are decoded.
        max_image_pixels: the largest image accepted (``--max-image-pixels``).
        check_jpeg_data: refuse JPEG files whose data libjpeg finds damaged (``--jpeg-damage-check``).
        on_infer: called with the model's name and ``"result"`` or ``"error"`` for each ``ModelInfer`` answered.
    """

    def __init__(
        self,
        manager: SessionManager,
        health: ServerHealth,
        versions: Callable[[], list[str]],
        decode_executor: Executor,
        *,
        max_image_pixels: int,
        check_jpeg_data: bool = True,
        on_infer: Callable[[str, str], None] | None = None,
    ) -> None:
        self._manager = manager
        self._health = health
        self._versions = versions
        self._decode_executor = decode_executor
        self._max_image_pixels = max_image_pixels
        self._check_jpeg_data = check_jpeg_data
        self._on_infer = on_infer
        self._pb = load_open_inference()[0]
        self._server_version = _version()  # read from the installed distribution's metadata once

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerLiveResponse(live=self._health.live())

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerReadyResponse(ready=self._health.ready())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        try:
            self._manager.runner(request.name)
        except StreamAbort:
            return self._pb.ModelReadyResponse(ready=False)
        ready = self._health.ready() and (not request.version or request.version in self._versions())
        return self._pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        return self._pb.ServerMetadataResponse(name=SERVER_NAME, version=self._server_version, extensions=[])

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        card = (await self._runner(request.name, context)).card
        tensor = self._pb.ModelMetadataResponse.TensorMetadata
        height, width = card.image_size
        return self._pb.ModelMetadataResponse(
            name=card.name,
            versions=self._versions(),
            platform=f"slotstream_{card.backend}",
            inputs=[
                tensor(name=FRAME, datatype="UINT8", shape=[-1, -1, 3]),
                tensor(name=IMAGE, datatype="BYTES", shape=[1]),
            ],
            outputs=[
                tensor(name=SLOTS, datatype=OUTPUT_DATATYPES[SLOTS], shape=[card.num_slots, card.slot_dim]),
                tensor(name=SLOT_IDS, datatype=OUTPUT_DATATYPES[SLOT_IDS], shape=[card.num_slots]),
                tensor(name=SEGMENTATION, datatype=OUTPUT_DATATYPES[SEGMENTATION], shape=[height, width]),
            ],
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """See the proto."""
        runner = await self._runner(request.model_name, context)
        card = runner.card
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
            fit = self._manager.limits.frame_fit_for(card)
            fitted = await loop.run_in_executor(self._decode_executor, self._fitted_input, request, card, fit)
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
            made = (await step_mask_outputs(step, masks, self._decode_executor)).outputs
            assert made.segmentation is not None
            values[SEGMENTATION] = made.segmentation  # [H, W]
        tensor = self._pb.ModelInferResponse.InferOutputTensor
        self._count(card.name, "result")
        return self._pb.ModelInferResponse(
            model_name=card.name,
            model_version=card.version,
            id=request.id,
            outputs=[
                tensor(name=name, datatype=OUTPUT_DATATYPES[name], shape=list(values[name].shape)) for name in outputs
            ],
            raw_output_contents=[values[name].tobytes() for name in outputs],
        )

    def _fitted_input(self, request: Any, card: ModelCard, fit: FrameFit) -> FittedFrame:
        """The request's image, read, decoded and fitted to ``card``'s model (on a decode thread: one hop).

        Raises:
            InferRequestError, FrameRejected: as :func:`input_image` and :func:`fit_frame` raise them.
        """
        image = input_image(request)
        return fit_frame(image, card.image_size, self._max_image_pixels, fit, self._check_jpeg_data)

    async def _runner(self, model: str, context: grpc.aio.ServicerContext) -> ModelRunner:
        """The current runner of ``model`` (``""``: the default); an unknown model ends the call with NOT_FOUND (not
        counted: a name a client made up must not become a metric label)."""
        try:
            return self._manager.runner(model)
        except StreamAbort as abort:
            await context.abort(grpc.StatusCode.NOT_FOUND, abort.message)
            raise  # not reached: the abort ends the call

    def _count(self, model: str, outcome: str) -> None:
        if self._on_infer is not None:
            self._on_infer(model, outcome)
