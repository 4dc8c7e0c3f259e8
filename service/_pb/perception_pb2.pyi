from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameFit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_FIT_UNSPECIFIED: _ClassVar[FrameFit]
    FRAME_FIT_STRETCH: _ClassVar[FrameFit]
    FRAME_FIT_CROP: _ClassVar[FrameFit]
    FRAME_FIT_PAD: _ClassVar[FrameFit]

class Output(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_UNSPECIFIED: _ClassVar[Output]
    OUTPUT_SLOTS: _ClassVar[Output]
    OUTPUT_SEGMENTATION: _ClassVar[Output]
    OUTPUT_SOFT_MASKS: _ClassVar[Output]
    OUTPUT_STATE: _ClassVar[Output]

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_JPEG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW_RGB8: _ClassVar[ImageEncoding]

class OpenKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPEN_KIND_UNSPECIFIED: _ClassVar[OpenKind]
    OPEN_KIND_NEW: _ClassVar[OpenKind]
    OPEN_KIND_RESUMED: _ClassVar[OpenKind]
    OPEN_KIND_HANDED_OFF: _ClassVar[OpenKind]

class DropReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_REASON_UNSPECIFIED: _ClassVar[DropReason]
    DROP_REASON_SUPERSEDED: _ClassVar[DropReason]
    DROP_REASON_SHUTTING_DOWN: _ClassVar[DropReason]
    DROP_REASON_STALE: _ClassVar[DropReason]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_UNDECODABLE_IMAGE: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_RAW_SIZE: _ClassVar[ErrorCode]
    ERROR_CODE_EMPTY_IMAGE: _ClassVar[ErrorCode]
    ERROR_CODE_IMAGE_TOO_LARGE: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_CHANNELS: _ClassVar[ErrorCode]
    ERROR_CODE_FRAME_INDEX_NOT_INCREASING: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_ENCODING: _ClassVar[ErrorCode]
    ERROR_CODE_INFERENCE_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_CAMERA_FRAME_ID_TOO_LONG: _ClassVar[ErrorCode]
    ERROR_CODE_SHARED_MEMORY_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_OPEN: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_OPEN: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_OPEN: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_MODEL: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_STREAM: _ClassVar[ErrorCode]
    ERROR_CODE_STREAM_EXPIRED: _ClassVar[ErrorCode]
    ERROR_CODE_STREAM_ID_IN_USE: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_RESUME_TOKEN: _ClassVar[ErrorCode]
    ERROR_CODE_RESUME_POINT_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_HANDOFF_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_TOO_MANY_STREAMS: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_READY: _ClassVar[ErrorCode]
    ERROR_CODE_SHUTTING_DOWN: _ClassVar[ErrorCode]
    ERROR_CODE_TAKEN_OVER: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_MALFORMED_REQUEST: _ClassVar[ErrorCode]
    ERROR_CODE_CLIENT_NOT_READING: _ClassVar[ErrorCode]
    ERROR_CODE_ADMIN_API_OFF: _ClassVar[ErrorCode]
    ERROR_CODE_MODEL_LOAD_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_ENDED_BY_OPERATOR: _ClassVar[ErrorCode]

class CloseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLOSE_REASON_UNSPECIFIED: _ClassVar[CloseReason]
    CLOSE_REASON_CLIENT_CLOSED: _ClassVar[CloseReason]
    CLOSE_REASON_SERVER_DRAINING: _ClassVar[CloseReason]
    CLOSE_REASON_TAKEN_OVER: _ClassVar[CloseReason]
    CLOSE_REASON_TOKEN_REVOKED: _ClassVar[CloseReason]
    CLOSE_REASON_ENDED_BY_OPERATOR: _ClassVar[CloseReason]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]

class StreamStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_STATUS_UNSPECIFIED: _ClassVar[StreamStatus]
    STREAM_STATUS_ATTACHED: _ClassVar[StreamStatus]
    STREAM_STATUS_DETACHED: _ClassVar[StreamStatus]
    STREAM_STATUS_HANDING_OFF: _ClassVar[StreamStatus]
FRAME_FIT_UNSPECIFIED: FrameFit
FRAME_FIT_STRETCH: FrameFit
FRAME_FIT_CROP: FrameFit
FRAME_FIT_PAD: FrameFit
OUTPUT_UNSPECIFIED: Output
OUTPUT_SLOTS: Output
OUTPUT_SEGMENTATION: Output
OUTPUT_SOFT_MASKS: Output
OUTPUT_STATE: Output
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_JPEG: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_RAW_RGB8: ImageEncoding
OPEN_KIND_UNSPECIFIED: OpenKind
OPEN_KIND_NEW: OpenKind
OPEN_KIND_RESUMED: OpenKind
OPEN_KIND_HANDED_OFF: OpenKind
DROP_REASON_UNSPECIFIED: DropReason
DROP_REASON_SUPERSEDED: DropReason
DROP_REASON_SHUTTING_DOWN: DropReason
DROP_REASON_STALE: DropReason
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_UNDECODABLE_IMAGE: ErrorCode
ERROR_CODE_WRONG_RAW_SIZE: ErrorCode
ERROR_CODE_EMPTY_IMAGE: ErrorCode
ERROR_CODE_IMAGE_TOO_LARGE: ErrorCode
ERROR_CODE_WRONG_CHANNELS: ErrorCode
ERROR_CODE_FRAME_INDEX_NOT_INCREASING: ErrorCode
ERROR_CODE_UNKNOWN_ENCODING: ErrorCode
ERROR_CODE_INFERENCE_FAILED: ErrorCode
ERROR_CODE_CAMERA_FRAME_ID_TOO_LONG: ErrorCode
ERROR_CODE_SHARED_MEMORY_UNAVAILABLE: ErrorCode
ERROR_CODE_NOT_OPEN: ErrorCode
ERROR_CODE_ALREADY_OPEN: ErrorCode
ERROR_CODE_INVALID_OPEN: ErrorCode
ERROR_CODE_UNKNOWN_MODEL: ErrorCode
ERROR_CODE_UNKNOWN_STREAM: ErrorCode
ERROR_CODE_STREAM_EXPIRED: ErrorCode
ERROR_CODE_STREAM_ID_IN_USE: ErrorCode
ERROR_CODE_WRONG_RESUME_TOKEN: ErrorCode
ERROR_CODE_RESUME_POINT_UNAVAILABLE: ErrorCode
ERROR_CODE_HANDOFF_MISMATCH: ErrorCode
ERROR_CODE_TOO_MANY_STREAMS: ErrorCode
ERROR_CODE_NOT_READY: ErrorCode
ERROR_CODE_SHUTTING_DOWN: ErrorCode
ERROR_CODE_TAKEN_OVER: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_MALFORMED_REQUEST: ErrorCode
ERROR_CODE_CLIENT_NOT_READING: ErrorCode
ERROR_CODE_ADMIN_API_OFF: ErrorCode
ERROR_CODE_MODEL_LOAD_FAILED: ErrorCode
ERROR_CODE_ENDED_BY_OPERATOR: ErrorCode
CLOSE_REASON_UNSPECIFIED: CloseReason
CLOSE_REASON_CLIENT_CLOSED: CloseReason
CLOSE_REASON_SERVER_DRAINING: CloseReason
CLOSE_REASON_TAKEN_OVER: CloseReason
CLOSE_REASON_TOKEN_REVOKED: CloseReason
CLOSE_REASON_ENDED_BY_OPERATOR: CloseReason
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_UINT8: DType
STREAM_STATUS_UNSPECIFIED: StreamStatus
STREAM_STATUS_ATTACHED: StreamStatus
STREAM_STATUS_DETACHED: StreamStatus
STREAM_STATUS_HANDING_OFF: StreamStatus

class StreamRequest(_message.Message):
    __slots__ = ("open", "frame", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: OpenStream
    frame: Frame
    close: CloseStream
    def __init__(self, open: _Optional[_Union[OpenStream, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., close: _Optional[_Union[CloseStream, _Mapping]] = ...) -> None: ...

class OpenStream(_message.Message):
    __slots__ = ("stream_id", "model", "options", "resume", "handoff")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    options: StreamOptions
    resume: ResumeStream
    handoff: StateHandoff
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., options: _Optional[_Union[StreamOptions, _Mapping]] = ..., resume: _Optional[_Union[ResumeStream, _Mapping]] = ..., handoff: _Optional[_Union[StateHandoff, _Mapping]] = ...) -> None: ...

class StreamOptions(_message.Message):
    __slots__ = ("idle_timeout_s", "live", "outputs", "mask_height", "mask_width", "soft_mask_dtype", "resume_window_s", "frame_fit", "max_staleness_s")
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MASK_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MASK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SOFT_MASK_DTYPE_FIELD_NUMBER: _ClassVar[int]
    RESUME_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIT_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_S_FIELD_NUMBER: _ClassVar[int]
    idle_timeout_s: float
    live: bool
    outputs: _containers.RepeatedScalarFieldContainer[Output]
    mask_height: int
    mask_width: int
    soft_mask_dtype: DType
    resume_window_s: float
    frame_fit: FrameFit
    max_staleness_s: float
    def __init__(self, idle_timeout_s: _Optional[float] = ..., live: _Optional[bool] = ..., outputs: _Optional[_Iterable[_Union[Output, str]]] = ..., mask_height: _Optional[int] = ..., mask_width: _Optional[int] = ..., soft_mask_dtype: _Optional[_Union[DType, str]] = ..., resume_window_s: _Optional[float] = ..., frame_fit: _Optional[_Union[FrameFit, str]] = ..., max_staleness_s: _Optional[float] = ...) -> None: ...

class ResumeStream(_message.Message):
    __slots__ = ("resume_token", "last_frame_index")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    last_frame_index: int
    def __init__(self, resume_token: _Optional[str] = ..., last_frame_index: _Optional[int] = ...) -> None: ...

class StateHandoff(_message.Message):
    __slots__ = ("stream_id", "model", "model_version", "last_frame_index", "state", "slot_ids")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SLOT_IDS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    model_version: str
    last_frame_index: int
    state: Tensor
    slot_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., last_frame_index: _Optional[int] = ..., state: _Optional[_Union[Tensor, _Mapping]] = ..., slot_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("frame_index", "capture_time_ns", "camera_frame_id", "image", "traceparent", "tracestate")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    capture_time_ns: int
    camera_frame_id: str
    image: Image
    traceparent: str
    tracestate: str
    def __init__(self, frame_index: _Optional[int] = ..., capture_time_ns: _Optional[int] = ..., camera_frame_id: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoding", "data", "height", "width", "channels", "shared_memory")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    encoding: ImageEncoding
    data: bytes
    height: int
    width: int
    channels: int
    shared_memory: SharedMemoryRef
    def __init__(self, encoding: _Optional[_Union[ImageEncoding, str]] = ..., data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., shared_memory: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class SharedMemoryRef(_message.Message):
    __slots__ = ("name", "offset", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    size: int
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class CloseStream(_message.Message):
    __slots__ = ("return_state",)
    RETURN_STATE_FIELD_NUMBER: _ClassVar[int]
    return_state: bool
    def __init__(self, return_state: _Optional[bool] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("opened", "result", "dropped", "error", "closed")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    opened: StreamOpened
    result: FrameResult
    dropped: FrameDropped
    error: FrameError
    closed: StreamClosed
    def __init__(self, opened: _Optional[_Union[StreamOpened, _Mapping]] = ..., result: _Optional[_Union[FrameResult, _Mapping]] = ..., dropped: _Optional[_Union[FrameDropped, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ..., closed: _Optional[_Union[StreamClosed, _Mapping]] = ...) -> None: ...

class StreamOpened(_message.Message):
    __slots__ = ("stream_id", "resume_token", "model", "model_version", "options", "kind", "last_frame_index", "slot_ids", "max_reply_bytes", "resume_history", "max_frames_ahead")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    SLOT_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESUME_HISTORY_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_AHEAD_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    resume_token: str
    model: str
    model_version: str
    options: StreamOptions
    kind: OpenKind
    last_frame_index: int
    slot_ids: _containers.RepeatedScalarFieldContainer[int]
    max_reply_bytes: int
    resume_history: int
    max_frames_ahead: int
    def __init__(self, stream_id: _Optional[str] = ..., resume_token: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., options: _Optional[_Union[StreamOptions, _Mapping]] = ..., kind: _Optional[_Union[OpenKind, str]] = ..., last_frame_index: _Optional[int] = ..., slot_ids: _Optional[_Iterable[int]] = ..., max_reply_bytes: _Optional[int] = ..., resume_history: _Optional[int] = ..., max_frames_ahead: _Optional[int] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("stream_id", "frame_index", "capture_time_ns", "camera_frame_id", "received_time_ns", "completed_time_ns", "model_version", "slots", "slot_ids", "segmentation", "soft_masks", "state", "latency")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_FIELD_NUMBER: _ClassVar[int]
    SOFT_MASKS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    frame_index: int
    capture_time_ns: int
    camera_frame_id: str
    received_time_ns: int
    completed_time_ns: int
    model_version: str
    slots: Tensor
    slot_ids: _containers.RepeatedScalarFieldContainer[int]
    segmentation: Tensor
    soft_masks: Tensor
    state: StateHandoff
    latency: LatencyBreakdown
    def __init__(self, stream_id: _Optional[str] = ..., frame_index: _Optional[int] = ..., capture_time_ns: _Optional[int] = ..., camera_frame_id: _Optional[str] = ..., received_time_ns: _Optional[int] = ..., completed_time_ns: _Optional[int] = ..., model_version: _Optional[str] = ..., slots: _Optional[_Union[Tensor, _Mapping]] = ..., slot_ids: _Optional[_Iterable[int]] = ..., segmentation: _Optional[_Union[Tensor, _Mapping]] = ..., soft_masks: _Optional[_Union[Tensor, _Mapping]] = ..., state: _Optional[_Union[StateHandoff, _Mapping]] = ..., latency: _Optional[_Union[LatencyBreakdown, _Mapping]] = ...) -> None: ...

class LatencyBreakdown(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms", "batch_size")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class FrameDropped(_message.Message):
    __slots__ = ("stream_id", "frame_index", "capture_time_ns", "reason", "message", "camera_frame_id", "model_version")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    frame_index: int
    capture_time_ns: int
    reason: DropReason
    message: str
    camera_frame_id: str
    model_version: str
    def __init__(self, stream_id: _Optional[str] = ..., frame_index: _Optional[int] = ..., capture_time_ns: _Optional[int] = ..., reason: _Optional[_Union[DropReason, str]] = ..., message: _Optional[str] = ..., camera_frame_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("stream_id", "frame_index", "code", "message", "capture_time_ns", "camera_frame_id", "model_version")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    frame_index: int
    code: ErrorCode
    message: str
    capture_time_ns: int
    camera_frame_id: str
    model_version: str
    def __init__(self, stream_id: _Optional[str] = ..., frame_index: _Optional[int] = ..., code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., capture_time_ns: _Optional[int] = ..., camera_frame_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class StreamClosed(_message.Message):
    __slots__ = ("stream_id", "reason", "handoff", "message")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    reason: CloseReason
    handoff: StateHandoff
    message: str
    def __init__(self, stream_id: _Optional[str] = ..., reason: _Optional[_Union[CloseReason, str]] = ..., handoff: _Optional[_Union[StateHandoff, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelCard(_message.Message):
    __slots__ = ("name", "version", "backend", "device", "input_height", "input_width", "num_slots", "slot_dim", "mask_height", "mask_width", "outputs", "preprocessing", "max_batch_size", "available_models", "default_frame_fit", "trained_frame_fit", "max_request_bytes", "max_image_pixels", "shared_memory")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    NUM_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_DIM_FIELD_NUMBER: _ClassVar[int]
    MASK_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MASK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FRAME_FIT_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FRAME_FIT_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    device: str
    input_height: int
    input_width: int
    num_slots: int
    slot_dim: int
    mask_height: int
    mask_width: int
    outputs: _containers.RepeatedScalarFieldContainer[Output]
    preprocessing: str
    max_batch_size: int
    available_models: _containers.RepeatedScalarFieldContainer[str]
    default_frame_fit: FrameFit
    trained_frame_fit: FrameFit
    max_request_bytes: int
    max_image_pixels: int
    shared_memory: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., num_slots: _Optional[int] = ..., slot_dim: _Optional[int] = ..., mask_height: _Optional[int] = ..., mask_width: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[Output, str]]] = ..., preprocessing: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., available_models: _Optional[_Iterable[str]] = ..., default_frame_fit: _Optional[_Union[FrameFit, str]] = ..., trained_frame_fit: _Optional[_Union[FrameFit, str]] = ..., max_request_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., shared_memory: _Optional[bool] = ...) -> None: ...

class ListStreamsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListStreamsResponse(_message.Message):
    __slots__ = ("streams", "server_time_ns")
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[StreamStats]
    server_time_ns: int
    def __init__(self, streams: _Optional[_Iterable[_Union[StreamStats, _Mapping]]] = ..., server_time_ns: _Optional[int] = ...) -> None: ...

class GetStreamStatsRequest(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class DropCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: DropReason
    count: int
    def __init__(self, reason: _Optional[_Union[DropReason, str]] = ..., count: _Optional[int] = ...) -> None: ...

class FrameErrorCount(_message.Message):
    __slots__ = ("code", "count")
    CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    count: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., count: _Optional[int] = ...) -> None: ...

class StreamStats(_message.Message):
    __slots__ = ("stream_id", "model", "model_version", "peer", "status", "options", "open_s", "idle_s", "detached_s", "reply_waiting_s", "frames_received", "frames_processed", "frames_dropped", "frame_errors", "frames_in_flight", "dropped_by_reason", "errors_by_code", "last_frame_index", "results_per_s", "latency_p50_ms", "latency_p99_ms", "capture_age_p50_ms", "state_bytes", "frames_unanswered")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPEN_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    DETACHED_S_FIELD_NUMBER: _ClassVar[int]
    REPLY_WAITING_S_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    FRAME_ERRORS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    ERRORS_BY_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_AGE_P50_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_UNANSWERED_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    model_version: str
    peer: str
    status: StreamStatus
    options: StreamOptions
    open_s: float
    idle_s: float
    detached_s: float
    reply_waiting_s: float
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frame_errors: int
    frames_in_flight: int
    dropped_by_reason: _containers.RepeatedCompositeFieldContainer[DropCount]
    errors_by_code: _containers.RepeatedCompositeFieldContainer[FrameErrorCount]
    last_frame_index: int
    results_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    capture_age_p50_ms: float
    state_bytes: int
    frames_unanswered: int
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., peer: _Optional[str] = ..., status: _Optional[_Union[StreamStatus, str]] = ..., options: _Optional[_Union[StreamOptions, _Mapping]] = ..., open_s: _Optional[float] = ..., idle_s: _Optional[float] = ..., detached_s: _Optional[float] = ..., reply_waiting_s: _Optional[float] = ..., frames_received: _Optional[int] = ..., frames_processed: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., frame_errors: _Optional[int] = ..., frames_in_flight: _Optional[int] = ..., dropped_by_reason: _Optional[_Iterable[_Union[DropCount, _Mapping]]] = ..., errors_by_code: _Optional[_Iterable[_Union[FrameErrorCount, _Mapping]]] = ..., last_frame_index: _Optional[int] = ..., results_per_s: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., capture_age_p50_ms: _Optional[float] = ..., state_bytes: _Optional[int] = ..., frames_unanswered: _Optional[int] = ...) -> None: ...

class ReloadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ReloadModelResponse(_message.Message):
    __slots__ = ("model", "previous_version", "version", "changed", "streams_on_previous", "load_s", "warm_up_s")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    STREAMS_ON_PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_S_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_S_FIELD_NUMBER: _ClassVar[int]
    model: str
    previous_version: str
    version: str
    changed: bool
    streams_on_previous: int
    load_s: float
    warm_up_s: float
    def __init__(self, model: _Optional[str] = ..., previous_version: _Optional[str] = ..., version: _Optional[str] = ..., changed: _Optional[bool] = ..., streams_on_previous: _Optional[int] = ..., load_s: _Optional[float] = ..., warm_up_s: _Optional[float] = ...) -> None: ...

class EndStreamRequest(_message.Message):
    __slots__ = ("stream_id", "reason")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    reason: str
    def __init__(self, stream_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EndStreamResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: StreamStats
    def __init__(self, stats: _Optional[_Union[StreamStats, _Mapping]] = ...) -> None: ...
