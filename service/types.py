"""Domain types of the streaming protocol, shared by the server and the client.

They mirror the proto messages (``proto/slotstream/v1/perception.proto``) as typed dataclasses with numpy
arrays; ``service.wire`` converts between the two. Array shapes use K (slots), D (slot width), H and W.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from plugins.frame_fit import FRAME_FITS, FrameFitName
from service.errors import ErrorCode


class Output(enum.IntEnum):
    """Outputs a stream can ask for (proto ``Output``)."""

    SLOTS = 1
    SEGMENTATION = 2
    SOFT_MASKS = 3
    STATE = 4


DEFAULT_OUTPUTS = frozenset({Output.SLOTS, Output.SEGMENTATION})

MIN_IDLE_TIMEOUT_S = 1.0
"""The shortest idle timeout (:attr:`StreamOptions.idle_timeout_s`) a stream may ask for; an open asking for less
(other than 0, the server's default) is refused: its stream would expire between frames."""


class FrameFit(enum.IntEnum):
    """How a frame is fitted to the model's input size (proto ``FrameFit``; boxes: :mod:`plugins.frame_fit`).

    ``UNSPECIFIED`` in an open means the server's default (``--frame-fit``); an opened stream's options always
    name the fit it runs with (``UNSPECIFIED`` there only stands for a value this client does not know).
    """

    UNSPECIFIED = 0
    STRETCH = 1  # the whole frame resized; the aspect ratio is not preserved
    CROP = 2  # the centred box with the model's aspect ratio resized; outside it the masks are OUTSIDE_VIEW
    PAD = 3  # the frame centred on a mid-grey canvas with the model's aspect ratio; the masks cover the frame

    @classmethod
    def named(cls, name: str) -> FrameFit:
        """The fit :mod:`plugins.frame_fit` calls ``name`` (``"stretch"``, ``"crop"`` or ``"pad"``).

        Raises:
            ValueError: ``name`` is not one of :data:`plugins.frame_fit.FRAME_FITS`.
        """
        if name not in FRAME_FITS:
            raise ValueError(f"a frame fit's name must be one of {', '.join(FRAME_FITS)}, got {name!r}")
        return cls[name.upper()]

    @property
    def fit_name(self) -> FrameFitName:
        """This fit as :mod:`plugins.frame_fit` names it (the inverse of :meth:`named`).

        Raises:
            ValueError: the fit is ``UNSPECIFIED``: the server's default must be chosen first.
        """
        if self == FrameFit.UNSPECIFIED:
            raise ValueError(f"a frame fit must be STRETCH, CROP or PAD, got {self!r}")
        return cast(FrameFitName, self.name.lower())


OUTSIDE_VIEW = 255
"""The ``segmentation`` value of a pixel the model does not see (outside the crop of :attr:`FrameFit.CROP`); the
soft masks are 0 there. Never a slot index: a stream with this fit has at most 255 slots (indices 0-254)."""


class ImageEncoding(enum.IntEnum):
    """How a frame's image is encoded (proto ``ImageEncoding``)."""

    UNSPECIFIED = 0
    JPEG = 1
    PNG = 2
    RAW_RGB8 = 3


class OpenKind(enum.IntEnum):
    """How a stream was opened (proto ``OpenKind``)."""

    UNSPECIFIED = 0  # a value this client does not know (a newer server's); never sent
    NEW = 1
    RESUMED = 2
    HANDED_OFF = 3


class DropReason(enum.IntEnum):
    """Why a frame was dropped (proto ``DropReason``)."""

    UNSPECIFIED = 0  # a value this client does not know (a newer server's); never sent
    SUPERSEDED = 1
    SHUTTING_DOWN = 2
    STALE = 3


class CloseReason(enum.IntEnum):
    """Why a stream closed (proto ``CloseReason``)."""

    UNSPECIFIED = 0  # a value this client does not know (a newer server's); never sent
    CLIENT_CLOSED = 1
    SERVER_DRAINING = 2
    TAKEN_OVER = 3
    TOKEN_REVOKED = 4
    ENDED_BY_OPERATOR = 5


MAX_TRACEPARENT_BYTES = 128
"""Longest ``Frame.traceparent`` a server reads (version 00 of the W3C format is 55 characters) and a client sends;
a server ignores a longer one."""
MAX_TRACESTATE_BYTES = 512
"""Longest ``Frame.tracestate`` a server carries into a frame's span (the size W3C asks vendors to propagate at
least) and a client sends; a server ignores a longer one."""

CLOSE_REASONS_KEY = "slotstream-close-reasons"
"""Call metadata of a ``Stream`` call: the highest :class:`CloseReason` its client knows, in decimal. The server sends
a ``StreamClosed`` of a later reason only to a client that names it; a client without the key is taken to know those
up to ``TAKEN_OVER`` (the reasons of the protocol before the key existed)."""


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream options (proto ``StreamOptions``); zero values mean "server default".

    Attributes:
        idle_timeout_s: seconds without frames before the stream is reclaimed.
        live: keep only the newest waiting frame, dropping older ones.
        outputs: outputs to compute; empty means :data:`DEFAULT_OUTPUTS`.
        mask_size: ``(H, W)`` of the segmentation and soft masks; ``None`` means the model's input size.
        soft_masks_uint8: send soft masks as uint8 (probability x 255) instead of float32.
        resume_window_s: seconds the state survives a lost connection; 0 frees it at once.
        frame_fit: how each frame is fitted to the model's input size; ``UNSPECIFIED``: the server's default.
        max_staleness_s: seconds a frame may be old (the server's clock minus its capture time) and still reach the
            model; an older one is dropped (:attr:`DropReason.STALE`). 0 turns the check off.
    """

    idle_timeout_s: float = 0.0
    live: bool = False
    outputs: frozenset[Output] = frozenset()
    mask_size: tuple[int, int] | None = None
    soft_masks_uint8: bool = False
    resume_window_s: float = 0.0
    frame_fit: FrameFit = FrameFit.UNSPECIFIED
    max_staleness_s: float = 0.0

    def wants(self, output: Output) -> bool:
        """Whether ``output`` is requested (an empty :attr:`outputs` means the default set)."""
        return output in (self.outputs or DEFAULT_OUTPUTS)


@dataclass(frozen=True)
class SharedMemoryRef:
    """Where an image's bytes lie in a POSIX shared memory segment on the server's host (proto ``SharedMemoryRef``).

    Attributes:
        name: the segment's name without its leading slash (``slotstream_`` then 1-64 of ``A-Z a-z 0-9 _ -``).
        offset: where the bytes start in it.
        size: how many bytes they take.
    """

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class EncodedImage:
    """A frame's image as sent: JPEG/PNG bytes or raw uint8 RGB pixels ``[height, width, channels]``, in ``data`` or,
    with ``shared_memory`` set (``data`` empty), in a shared memory segment on the server's host."""

    encoding: ImageEncoding | int  # an int only for a value outside ImageEncoding, kept for the error message
    data: bytes
    height: int = 0
    width: int = 0
    channels: int = 0
    shared_memory: SharedMemoryRef | None = None


@dataclass(frozen=True)
class StateHandoff:
    """A stream's recurrent state, exportable to another server (proto ``StateHandoff``).

    Attributes:
        stream_id: the stream it belongs to.
        model: name of the model that produced it.
        model_version: version of that model; only the same version accepts it.
        last_frame_index: the last frame folded into the state.
        state: float32 ``[K, D]``.
        slot_ids: the K slot ids.
    """

    stream_id: str
    model: str
    model_version: str
    last_frame_index: int
    state: np.ndarray
    slot_ids: tuple[int, ...]


@dataclass(frozen=True)
class ResumeRequest:
    """Resume a stream on a new connection; ``last_frame_index`` is the last frame the client got an answer for.
    ``resume_token`` is a secret (it resumes the stream), left out of the ``repr`` as the auth token is."""

    resume_token: str = field(repr=False)
    last_frame_index: int | None


@dataclass(frozen=True)
class OpenRequest:
    """Open a new stream, resume one (``resume``) or continue one from exported state (``handoff``)."""

    stream_id: str = ""
    model: str = ""
    options: StreamOptions = field(default_factory=StreamOptions)
    resume: ResumeRequest | None = None
    handoff: StateHandoff | None = None


@dataclass(frozen=True)
class FrameRequest:
    """One frame to process; ``traceparent`` and ``tracestate`` are its W3C Trace Context (empty: none)."""

    frame_index: int
    image: EncodedImage
    capture_time_ns: int = 0
    camera_frame_id: str = ""
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class CloseRequest:
    """End the stream after answering every frame; ``return_state`` asks for the final state."""

    return_state: bool = False


StreamRequest = OpenRequest | FrameRequest | CloseRequest


@dataclass(frozen=True)
class StreamOpened:
    """The first response of a stream. ``resume_token`` is a secret (it resumes the stream), left out of the
    ``repr`` as the auth token is."""

    stream_id: str
    resume_token: str = field(repr=False)
    model: str
    model_version: str
    options: StreamOptions
    kind: OpenKind
    last_frame_index: int | None
    slot_ids: tuple[int, ...]
    max_reply_bytes: int = 0
    """Upper bound on one frame reply's serialized size; 0 when the server did not report it."""
    resume_history: int = 0
    """How many processed frames back a resume of the stream can go (the server's ``--resume-history``); 0 when the
    server did not report it."""
    max_frames_ahead: int = 0
    """The most frames the server processes ahead of the replies gRPC has taken from the stream; 0 when the server
    did not report it."""


@dataclass(frozen=True)
class LatencyBreakdown:
    """Server-side time spent on one frame, in milliseconds (see the proto's ``LatencyBreakdown``)."""

    decode_ms: float = 0.0
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    total_ms: float = 0.0
    batch_size: int = 0


@dataclass(frozen=True)
class FrameResult:
    """The outputs for one frame; arrays are ``None`` when not requested.

    The arrays of a result the client received are read-only views of the reply's bytes (no copy is made): copy
    one (``result.slots.copy()``) to change it in place.

    Attributes:
        slots: float32 ``[K, D]``.
        segmentation: uint8 ``[H, W]`` slot index per pixel over the whole frame; :data:`OUTSIDE_VIEW` (255) where
            the model does not see the frame (:attr:`FrameFit.CROP`).
        soft_masks: ``[K, H, W]`` float32, or uint8 probability x 255; 0 where ``segmentation`` is
            :data:`OUTSIDE_VIEW`.
        state: the state after this frame (output STATE).
    """

    stream_id: str
    frame_index: int
    capture_time_ns: int
    camera_frame_id: str
    received_time_ns: int
    completed_time_ns: int
    model_version: str
    slot_ids: tuple[int, ...]
    latency: LatencyBreakdown
    slots: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    soft_masks: np.ndarray | None = None
    state: StateHandoff | None = None


@dataclass(frozen=True)
class FrameDropped:
    """A frame that was accepted but not processed; ``model_version`` is the stream's, as on its results (empty
    from a server older than the field)."""

    stream_id: str
    frame_index: int
    capture_time_ns: int
    reason: DropReason
    message: str = ""
    camera_frame_id: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class FrameError:
    """A frame that could not be processed; the stream continues. ``capture_time_ns`` and ``camera_frame_id``
    echo the frame's (the id is empty when it was the problem: ``CAMERA_FRAME_ID_TOO_LONG``); ``model_version`` is
    the stream's, as on its results (empty from a server older than the field)."""

    stream_id: str
    frame_index: int
    code: ErrorCode
    message: str
    capture_time_ns: int = 0
    camera_frame_id: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class StreamClosed:
    """The last response of a stream closed by the client or drained by the server."""

    stream_id: str
    reason: CloseReason
    handoff: StateHandoff | None = None
    message: str = ""


FrameResponse = FrameResult | FrameDropped | FrameError
StreamResponse = StreamOpened | FrameResult | FrameDropped | FrameError | StreamClosed


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did (proto ``ReloadModelResponse``).

    Attributes:
        model: the model's name.
        previous_version: the version new streams got before the reload.
        version: the version they get now (equal to ``previous_version`` when nothing changed).
        changed: whether the version changed.
        streams_on_previous: streams still running the previous version (0 when nothing changed).
        load_s: seconds the folder took to load.
        warm_up_s: seconds the new version's warm-up took (0 when nothing changed, or without warm-up).
    """

    model: str
    previous_version: str
    version: str
    changed: bool
    streams_on_previous: int
    load_s: float
    warm_up_s: float
