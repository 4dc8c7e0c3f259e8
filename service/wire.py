"""Conversion between the proto messages (``service._pb``) and the domain types (``service.types``).

Both directions are here so the server and the client share one mapping. Requests from the network are
untrusted: a malformed open raises :class:`StreamAbort`, and so does an open with an enum value this server does not
know (an output, a soft mask type, a frame fit: a client must learn that it asked for something this server does not
serve, not get less); an unset ``oneof`` (a newer client's request kind) converts to ``None`` and is ignored, as
the versioning rules require. In responses, an unknown enum value or ``oneof`` case is ignored (see
:func:`response_from_proto`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from typing import Any, TypeVar, cast

import numpy as np

from plugins.frame_fit import FrameFitName
from service.engine import ModelCard
from service.errors import ErrorCode, StreamAbort
from service.generated import pb
from service.types import (
    CloseReason,
    CloseRequest,
    DropReason,
    EncodedImage,
    FrameDropped,
    FrameError,
    FrameFit,
    FrameRequest,
    FrameResult,
    ImageEncoding,
    LatencyBreakdown,
    OpenKind,
    OpenRequest,
    Output,
    ResumeRequest,
    SharedMemoryRef,
    StateHandoff,
    StreamClosed,
    StreamOpened,
    StreamOptions,
    StreamRequest,
    StreamResponse,
)

_DTYPES: dict[int, np.dtype[Any]] = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_UINT8: np.dtype("u1")}
_DTYPE_CODES: dict[np.dtype[Any], int] = {np.dtype("float32"): pb.DTYPE_FLOAT32, np.dtype("uint8"): pb.DTYPE_UINT8}
_MAX_TENSOR_DIMS = 8
_MAX_OUTPUTS_LISTED = 64
"""Most entries ``StreamOptions.outputs`` may list (each kind once is a handful; room for repeats and kinds a newer
client knows): a longer list is refused before it is read, so an open cannot cost the event loop seconds."""
MAX_SLOT_IDS = 256
"""Most slot ids a hand-off may carry: a segmentation is uint8, so no served model has more slots."""
_SOFT_MASK_DTYPES = (pb.DTYPE_UNSPECIFIED, pb.DTYPE_FLOAT32, pb.DTYPE_UINT8)
_OUTPUTS = frozenset({pb.OUTPUT_UNSPECIFIED, *(int(output) for output in Output)})
"""The ``Output`` values an open may list (``OUTPUT_UNSPECIFIED`` is ignored)."""
_FRAME_FITS = frozenset(int(fit) for fit in FrameFit)
_E = TypeVar("_E", bound=enum.IntEnum)
_ProtoEnum = TypeVar("_ProtoEnum", bound=int)

# -- tensors ----------------------------------------------------------------------------------------------


def tensor_to_proto(array: np.ndarray) -> Any:
    """A float32 or uint8 array as a ``Tensor`` (row-major, little-endian)."""
    message = pb.Tensor()
    fill_tensor(message, array)
    return message


def fill_tensor(message: Any, array: np.ndarray) -> None:
    """Write ``array`` into the ``Tensor`` field ``message`` in place (nested protobuf constructors copy the
    payload once per level; filling in place copies it once).

    Raises:
        TypeError: ``array`` is neither float32 nor uint8.
    """
    code = _DTYPE_CODES.get(array.dtype)
    if code is None:
        raise TypeError(f"tensors are float32 or uint8, got {array.dtype}")
    message.shape[:] = array.shape
    message.dtype = code
    message.data = np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()


def tensor_from_proto(tensor: Any) -> np.ndarray:
    """A ``Tensor`` as a (read-only) numpy array.

    Raises:
        ValueError: unknown dtype, bad shape, or a byte count that does not match the shape.
    """
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unknown tensor dtype {tensor.dtype}")
    if len(tensor.shape) > _MAX_TENSOR_DIMS:  # before building a tuple of a client-chosen length
        raise ValueError(f"bad tensor shape: {len(tensor.shape)} dimensions, more than {_MAX_TENSOR_DIMS}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"bad tensor shape {shape}")
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise ValueError(f"a {dtype.name} tensor of shape {shape} needs {expected} bytes, got {len(tensor.data)}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)  # [prod(shape)] -> [*shape], the message's own dims


# -- requests ---------------------------------------------------------------------------------------------


def request_to_proto(request: StreamRequest) -> Any:
    """A domain request as a proto message."""
    if isinstance(request, OpenRequest):
        options = options_to_proto(request.options)
        open_ = pb.OpenStream(stream_id=request.stream_id, model=request.model, options=options)
        if request.resume is not None:
            open_.resume.resume_token = request.resume.resume_token
            if request.resume.last_frame_index is not None:
                open_.resume.last_frame_index = request.resume.last_frame_index
        if request.handoff is not None:
            open_.handoff.CopyFrom(handoff_to_proto(request.handoff))
        return pb.StreamRequest(open=open_)
    if isinstance(request, FrameRequest):
        message = pb.StreamRequest()  # filled in place: the image bytes are copied once, not once per level
        frame = message.frame
        frame.frame_index = request.frame_index
        frame.capture_time_ns = request.capture_time_ns
        frame.camera_frame_id = request.camera_frame_id
        frame.traceparent = request.traceparent
        frame.tracestate = request.tracestate
        image = frame.image
        image.encoding = proto_enum(pb.ImageEncoding, request.image.encoding)
        image.data = request.image.data
        image.height, image.width, image.channels = request.image.height, request.image.width, request.image.channels
        shared = request.image.shared_memory
        if shared is not None:
            image.shared_memory.name, image.shared_memory.offset = shared.name, shared.offset
            image.shared_memory.size = shared.size
        return message
    return pb.StreamRequest(close=pb.CloseStream(return_state=request.return_state))


def request_from_proto(message: Any) -> StreamRequest | None:
    """A proto request as a domain request; ``None`` for a request kind this server does not know.

    Raises:
        StreamAbort: a malformed open (``INVALID_OPEN`` or ``HANDOFF_MISMATCH``).
    """
    kind = message.WhichOneof("kind")
    if kind == "frame":
        frame = message.frame
        image = frame.image
        shared = image.shared_memory if image.HasField("shared_memory") else None
        return FrameRequest(
            frame_index=frame.frame_index,
            image=EncodedImage(
                _image_encoding(image.encoding),
                image.data,
                image.height,
                image.width,
                image.channels,
                None if shared is None else SharedMemoryRef(shared.name, shared.offset, shared.size),
            ),
            capture_time_ns=frame.capture_time_ns,
            camera_frame_id=frame.camera_frame_id,
            traceparent=frame.traceparent,
            tracestate=frame.tracestate,
        )
    if kind == "open":
        return _open_from_proto(message.open)
    if kind == "close":
        return CloseRequest(return_state=message.close.return_state)
    return None


def _require_known(name: str, value: int, known: Collection[int], choices: str) -> None:
    """Refuse an open whose enum option ``name`` has a value outside ``known`` (an unknown number, say from a newer
    client), naming the ``choices``.

    Raises:
        StreamAbort: ``INVALID_OPEN``.
    """
    if value not in known:
        raise StreamAbort(ErrorCode.INVALID_OPEN, f"invalid stream options: {name} {value} is not {choices}")


def _open_from_proto(message: Any) -> OpenRequest:
    """A proto open as a domain open.

    Raises:
        StreamAbort: ``INVALID_OPEN`` for an open that sets both ``resume`` and ``handoff`` (checked first, so
            that an empty hand-off is not reported as malformed), an unknown ``soft_mask_dtype``, an unknown
            ``frame_fit`` or an unknown value in ``outputs``; ``HANDOFF_MISMATCH`` for a malformed hand-off state.
    """
    if message.HasField("resume") and message.HasField("handoff"):
        raise StreamAbort(
            ErrorCode.INVALID_OPEN,
            "set either resume or handoff in an open, not both: resume continues a stream of this server after a "
            "lost connection, handoff continues one from a StateHandoff",
        )
    options = message.options
    _require_known(
        "soft_mask_dtype",
        options.soft_mask_dtype,
        _SOFT_MASK_DTYPES,
        "DTYPE_FLOAT32 (1, or 0 for the default) or DTYPE_UINT8 (2)",
    )
    _require_known(
        "frame_fit",
        options.frame_fit,
        _FRAME_FITS,
        "FRAME_FIT_STRETCH (1), FRAME_FIT_CROP (2), FRAME_FIT_PAD (3) or 0 for the server's default",
    )
    if len(options.outputs) > _MAX_OUTPUTS_LISTED:  # before reading a client-chosen number of entries
        raise StreamAbort(
            ErrorCode.INVALID_OPEN,
            f"options.outputs lists {len(options.outputs):,} entries: list each output once (there are "
            f"{len(Output)} kinds)",
        )
    unknown = sorted({int(output) for output in options.outputs} - _OUTPUTS)
    if unknown:
        values = ", ".join(map(str, unknown))
        what = "is not an output" if len(unknown) == 1 else "are not outputs"
        raise StreamAbort(
            ErrorCode.INVALID_OPEN,
            f"invalid stream options: outputs {values} {what} this server knows; ask for OUTPUT_SLOTS (1), "
            "OUTPUT_SEGMENTATION (2), OUTPUT_SOFT_MASKS (3) or OUTPUT_STATE (4) (ModelCard.outputs lists them)",
        )
    resume = None
    if message.HasField("resume"):
        last = message.resume.last_frame_index if message.resume.HasField("last_frame_index") else None
        resume = ResumeRequest(message.resume.resume_token, last)
    handoff = None
    if message.HasField("handoff"):
        try:
            handoff = handoff_from_proto(message.handoff)
        except ValueError as error:
            raise StreamAbort(ErrorCode.HANDOFF_MISMATCH, f"malformed hand-off state: {error}") from error
    return OpenRequest(
        stream_id=message.stream_id,
        model=message.model,
        options=options_from_proto(message.options),
        resume=resume,
        handoff=handoff,
    )


def _image_encoding(value: int) -> ImageEncoding | int:
    """The member for ``value``, or ``value`` itself when it is none, so that the rejection can quote it."""
    try:
        return ImageEncoding(value)
    except ValueError:
        return value


def options_to_proto(options: StreamOptions) -> Any:
    """Domain stream options as a proto message."""
    height, width = options.mask_size or (0, 0)
    return pb.StreamOptions(
        idle_timeout_s=options.idle_timeout_s,
        live=options.live,
        outputs=sorted(proto_enum(pb.Output, o) for o in options.outputs),
        mask_height=height,
        mask_width=width,
        soft_mask_dtype=pb.DTYPE_UINT8 if options.soft_masks_uint8 else pb.DTYPE_FLOAT32,
        resume_window_s=options.resume_window_s,
        frame_fit=proto_enum(pb.FrameFit, options.frame_fit),
        max_staleness_s=options.max_staleness_s,
    )


def options_from_proto(message: Any) -> StreamOptions:
    """Proto stream options as domain options: the server's echo in ``StreamOpened``, or an open's (which
    :func:`request_from_proto` refuses before this when it holds an unknown value). An unknown output value is
    ignored and an unknown ``frame_fit`` becomes ``FrameFit.UNSPECIFIED``, as a client ignores a newer server's
    values."""
    known = {int(o) for o in Output}
    size = (message.mask_height, message.mask_width)
    mask_size = None if size == (0, 0) else size
    return StreamOptions(
        idle_timeout_s=message.idle_timeout_s,
        live=message.live,
        outputs=frozenset(Output(o) for o in message.outputs if o in known),
        mask_size=mask_size,
        soft_masks_uint8=message.soft_mask_dtype == pb.DTYPE_UINT8,
        resume_window_s=message.resume_window_s,
        frame_fit=known_member(FrameFit, message.frame_fit),
        max_staleness_s=message.max_staleness_s,
    )


def handoff_to_proto(handoff: StateHandoff) -> Any:
    """A hand-off as a proto message."""
    message = pb.StateHandoff(
        stream_id=handoff.stream_id,
        model=handoff.model,
        model_version=handoff.model_version,
        last_frame_index=handoff.last_frame_index,
        slot_ids=list(handoff.slot_ids),
    )
    fill_tensor(message.state, handoff.state)
    return message


def handoff_from_proto(message: Any) -> StateHandoff:
    """A proto hand-off as a domain hand-off.

    Raises:
        ValueError: the state tensor is malformed or not float32.
    """
    if len(message.slot_ids) > MAX_SLOT_IDS:  # before building a tuple of a client-chosen length
        raise ValueError(f"{len(message.slot_ids):,} slot ids: a state holds at most {MAX_SLOT_IDS} slots")
    state = tensor_from_proto(message.state)
    if state.dtype != np.float32:
        raise ValueError(f"the state must be float32, got {state.dtype}")
    return StateHandoff(
        stream_id=message.stream_id,
        model=message.model,
        model_version=message.model_version,
        last_frame_index=message.last_frame_index,
        state=state,
        slot_ids=tuple(message.slot_ids),
    )


# -- responses --------------------------------------------------------------------------------------------


def response_to_proto(response: StreamResponse) -> Any:
    """A domain response as a proto message."""
    if isinstance(response, FrameResult):
        message = pb.StreamResponse()
        _fill_result(message.result, response)
        return message
    if isinstance(response, FrameDropped):
        return pb.StreamResponse(
            dropped=pb.FrameDropped(
                stream_id=response.stream_id,
                frame_index=response.frame_index,
                capture_time_ns=response.capture_time_ns,
                reason=proto_enum(pb.DropReason, response.reason),
                message=response.message,
                camera_frame_id=response.camera_frame_id,
                model_version=response.model_version,
            )
        )
    if isinstance(response, FrameError):
        return pb.StreamResponse(
            error=pb.FrameError(
                stream_id=response.stream_id,
                frame_index=response.frame_index,
                code=proto_enum(pb.ErrorCode, response.code),
                message=response.message,
                capture_time_ns=response.capture_time_ns,
                camera_frame_id=response.camera_frame_id,
                model_version=response.model_version,
            )
        )
    if isinstance(response, StreamOpened):
        opened = pb.StreamOpened(
            stream_id=response.stream_id,
            resume_token=response.resume_token,
            model=response.model,
            model_version=response.model_version,
            options=options_to_proto(response.options),
            kind=proto_enum(pb.OpenKind, response.kind),
            slot_ids=list(response.slot_ids),
            max_reply_bytes=response.max_reply_bytes,
            resume_history=response.resume_history,
            max_frames_ahead=response.max_frames_ahead,
        )
        if response.last_frame_index is not None:
            opened.last_frame_index = response.last_frame_index
        return pb.StreamResponse(opened=opened)
    reason = proto_enum(pb.CloseReason, response.reason)
    closed = pb.StreamClosed(stream_id=response.stream_id, reason=reason, message=response.message)
    if response.handoff is not None:
        closed.handoff.CopyFrom(handoff_to_proto(response.handoff))
    return pb.StreamResponse(closed=closed)


def _fill_result(message: Any, result: FrameResult) -> None:
    """Write ``result`` into the ``FrameResult`` field ``message`` in place (one copy of each array)."""
    message.stream_id = result.stream_id
    message.frame_index = result.frame_index
    message.capture_time_ns = result.capture_time_ns
    message.camera_frame_id = result.camera_frame_id
    message.received_time_ns = result.received_time_ns
    message.completed_time_ns = result.completed_time_ns
    message.model_version = result.model_version
    message.slot_ids[:] = result.slot_ids
    latency, out = result.latency, message.latency
    out.decode_ms, out.queue_ms, out.inference_ms = latency.decode_ms, latency.queue_ms, latency.inference_ms
    out.postprocess_ms, out.total_ms, out.batch_size = latency.postprocess_ms, latency.total_ms, latency.batch_size
    if result.slots is not None:
        fill_tensor(message.slots, result.slots)
    if result.segmentation is not None:
        fill_tensor(message.segmentation, result.segmentation)
    if result.soft_masks is not None:
        fill_tensor(message.soft_masks, result.soft_masks)
    if result.state is not None:
        message.state.CopyFrom(handoff_to_proto(result.state))


def response_from_proto(message: Any) -> StreamResponse | None:
    """A proto response as a domain response; ``None`` for a response kind this client does not know.

    An enum value this client does not know becomes its enum's ``UNSPECIFIED`` member; it never makes the
    message unreadable.
    """
    kind = message.WhichOneof("kind")
    if kind == "result":
        return _result_from_proto(message.result)
    if kind == "dropped":
        dropped = message.dropped
        return FrameDropped(
            stream_id=dropped.stream_id,
            frame_index=dropped.frame_index,
            capture_time_ns=dropped.capture_time_ns,
            reason=known_member(DropReason, dropped.reason),
            message=dropped.message,
            camera_frame_id=dropped.camera_frame_id,
            model_version=dropped.model_version,
        )
    if kind == "error":
        error = message.error
        return FrameError(
            stream_id=error.stream_id,
            frame_index=error.frame_index,
            code=known_member(ErrorCode, error.code),
            message=error.message,
            capture_time_ns=error.capture_time_ns,
            camera_frame_id=error.camera_frame_id,
            model_version=error.model_version,
        )
    if kind == "opened":
        opened = message.opened
        return StreamOpened(
            stream_id=opened.stream_id,
            resume_token=opened.resume_token,
            model=opened.model,
            model_version=opened.model_version,
            options=options_from_proto(opened.options),
            kind=known_member(OpenKind, opened.kind),
            last_frame_index=opened.last_frame_index if opened.HasField("last_frame_index") else None,
            slot_ids=tuple(opened.slot_ids),
            max_reply_bytes=opened.max_reply_bytes,
            resume_history=opened.resume_history,
            max_frames_ahead=opened.max_frames_ahead,
        )
    if kind == "closed":
        closed = message.closed
        return StreamClosed(
            stream_id=closed.stream_id,
            reason=known_member(CloseReason, closed.reason),
            handoff=handoff_from_proto(closed.handoff) if closed.HasField("handoff") else None,
            message=closed.message,
        )
    return None


def known_member(kind: type[_E], value: int) -> _E:
    """``value`` as a member of ``kind``, or its ``UNSPECIFIED`` member (0) when it is not one (a newer server's
    value): the versioning rules say a client ignores an unknown enum value, so the message it came in is still
    delivered."""
    try:
        return kind(value)
    except ValueError:
        return kind(0)


def _result_from_proto(r: Any) -> FrameResult:
    latency = r.latency
    return FrameResult(
        stream_id=r.stream_id,
        frame_index=r.frame_index,
        capture_time_ns=r.capture_time_ns,
        camera_frame_id=r.camera_frame_id,
        received_time_ns=r.received_time_ns,
        completed_time_ns=r.completed_time_ns,
        model_version=r.model_version,
        slot_ids=tuple(r.slot_ids),
        latency=LatencyBreakdown(
            latency.decode_ms,
            latency.queue_ms,
            latency.inference_ms,
            latency.postprocess_ms,
            latency.total_ms,
            latency.batch_size,
        ),
        slots=tensor_from_proto(r.slots) if r.HasField("slots") else None,
        segmentation=tensor_from_proto(r.segmentation) if r.HasField("segmentation") else None,
        soft_masks=tensor_from_proto(r.soft_masks) if r.HasField("soft_masks") else None,
        state=handoff_from_proto(r.state) if r.HasField("state") else None,
    )


# -- model card -------------------------------------------------------------------------------------------


def card_to_proto(card: ModelCard, available_models: list[str]) -> Any:
    """A model card as a proto message."""
    return pb.ModelCard(
        name=card.name,
        version=card.version,
        backend=card.backend,
        device=card.device,
        input_height=card.image_size[0],
        input_width=card.image_size[1],
        num_slots=card.num_slots,
        slot_dim=card.slot_dim,
        mask_height=card.mask_size[0],
        mask_width=card.mask_size[1],
        outputs=[proto_enum(pb.Output, o) for o in Output],
        preprocessing=card.preprocessing,
        max_batch_size=card.max_batch_size,
        available_models=available_models,
        default_frame_fit=_fit_value(card.default_frame_fit),
        trained_frame_fit=_fit_value(card.frame_fit),
        max_request_bytes=card.max_request_bytes,
        max_image_pixels=card.max_image_pixels,
        shared_memory=card.shared_memory,
    )


def card_from_proto(message: Any) -> ModelCard:
    """A proto model card as a domain card."""
    return ModelCard(
        name=message.name,
        version=message.version,
        backend=message.backend,
        device=message.device,
        image_size=(message.input_height, message.input_width),
        num_slots=message.num_slots,
        slot_dim=message.slot_dim,
        mask_size=(message.mask_height, message.mask_width),
        max_batch_size=message.max_batch_size,
        preprocessing=message.preprocessing,
        frame_fit=_fit_name(message.trained_frame_fit),
        default_frame_fit=_fit_name(message.default_frame_fit),
        available_models=tuple(message.available_models),
        max_request_bytes=message.max_request_bytes,
        max_image_pixels=message.max_image_pixels,
        shared_memory=message.shared_memory,
    )


def _fit_value(name: FrameFitName | None) -> pb.FrameFit:
    """A fit as its proto ``FrameFit`` value (``None``: ``FRAME_FIT_UNSPECIFIED``)."""
    return proto_enum(pb.FrameFit, FrameFit.named(name) if name else FrameFit.UNSPECIFIED)


def proto_enum(kind: type[_ProtoEnum], value: int) -> _ProtoEnum:
    """``value`` (a domain enum member, whose numbers are the proto's) as a value of the proto enum ``kind``:
    protobuf takes enum fields as plain ints, its stubs want the enum's own type."""
    return cast(_ProtoEnum, int(value))


def _fit_name(value: int) -> FrameFitName | None:
    """A proto ``FrameFit`` value as a fit's name; ``None`` for ``UNSPECIFIED`` or a value this client does not
    know."""
    fit = known_member(FrameFit, value)
    return None if fit == FrameFit.UNSPECIFIED else fit.fit_name
