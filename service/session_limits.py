"""``SessionLimits``: the server-wide limits on sessions, and the options a new stream runs with under them.

An open's options are checked and made explicit here (:meth:`SessionLimits.effective_options`): timeouts capped
at the server's maximum, the mask size, outputs and frame fit filled in. :func:`clamped_options` and
:func:`options_for_log` describe the result for the ``stream opened`` log line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from service.engine import ModelCard
from service.errors import ErrorCode, StreamAbort
from service.grpc_limits import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_MESSAGE_BYTES
from service.reply_size import reply_bytes
from service.types import DEFAULT_OUTPUTS, OUTSIDE_VIEW, FrameFit, StreamOptions


@dataclass(frozen=True)
class SessionLimits:
    """Server-wide limits on sessions.

    Attributes:
        max_streams: sessions held at once (attached or detached).
        max_streams_per_client: sessions one client address may hold at once (0: no limit).
        open_timeout_s: how long a stream call may take to send its open.
        default_idle_timeout_s: idle timeout of streams that do not choose one.
        max_idle_timeout_s: cap on a stream's idle timeout.
        max_resume_window_s: cap on a stream's resume window.
        resume_history: states kept per stream for resuming at a past frame.
        max_mask_pixels: cap on a stream's requested mask size (height x width); the server sets it from
            ``--max-image-pixels``, which the refusal names.
        max_reply_bytes: cap on the size of a stream's frame replies (the gRPC message limit); an open whose
            outputs at its mask size could exceed it is refused (see :func:`~service.reply_size.reply_bytes`).
        reply_budget_bytes: bytes all streams together may reserve for replies their clients have not read
            (:class:`~service.reply_budget.ReplyBudget`; ``--max-total-buffered-reply-bytes``).
        default_frame_fit: the frame fit of streams that do not choose one (``--frame-fit``); ``UNSPECIFIED``
            (``--frame-fit auto``): each model's own, see :meth:`frame_fit_for`.
    """

    max_streams: int = 64
    max_streams_per_client: int = 0
    open_timeout_s: float = 10.0
    default_idle_timeout_s: float = 300.0
    max_idle_timeout_s: float = 3600.0
    max_resume_window_s: float = 300.0
    resume_history: int = 32
    max_mask_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_reply_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    reply_budget_bytes: int = 16 * 1024**3
    default_frame_fit: FrameFit = FrameFit.UNSPECIFIED

    def frame_fit_for(self, card: ModelCard) -> FrameFit:
        """The fit of a stream of ``card``'s model that chooses none: :attr:`default_frame_fit` when set, else the
        fit the model was trained with (``card.frame_fit``), else ``STRETCH`` (the whole frame: nothing cut off)."""
        if self.default_frame_fit != FrameFit.UNSPECIFIED:
            return self.default_frame_fit
        return FrameFit.named(card.frame_fit) if card.frame_fit else FrameFit.STRETCH

    def effective_options(self, options: StreamOptions, card: ModelCard) -> StreamOptions:
        """The options a new stream of ``card``'s model runs with, as ``StreamOpened.options`` echoes them:
        timeouts capped by the server, the mask size, the outputs (empty: :data:`DEFAULT_OUTPUTS`) and the frame
        fit (unspecified: the server's default) made explicit.

        Raises:
            StreamAbort: ``INVALID_OPEN``, listing every problem of the options.
        """
        problems = []
        for name in ("idle_timeout_s", "resume_window_s", "max_staleness_s"):
            value = getattr(options, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        mask_size = options.mask_size or card.image_size
        if mask_size[0] < 1 or mask_size[1] < 1:
            problems.append(f"mask_height and mask_width must both be set (>= 1) or both be 0, got {mask_size}")
        elif mask_size[0] * mask_size[1] > self.max_mask_pixels:
            problems.append(
                f"the mask size {mask_size[0]}x{mask_size[1]} exceeds this server's limit of {self.max_mask_pixels} "
                "pixels (its --max-image-pixels)"
            )
        elif (size := reply_bytes(replace(options, mask_size=mask_size), card)) > self.max_reply_bytes:
            problems.append(
                f"with the mask size {mask_size[0]}x{mask_size[1]} a frame's reply could be {size} bytes, over this "
                f"server's message limit of {self.max_reply_bytes} bytes; ask for a smaller mask size, uint8 soft "
                "masks or fewer outputs"
            )
        frame_fit = options.frame_fit or self.frame_fit_for(card)
        if frame_fit == FrameFit.CROP and card.num_slots > OUTSIDE_VIEW:
            problems.append(
                f"frame_fit FRAME_FIT_CROP marks the pixels outside the crop with {OUTSIDE_VIEW} in the segmentation, "
                f"which is a slot index of this model ({card.num_slots} slots); use FRAME_FIT_STRETCH or "
                "FRAME_FIT_PAD"
            )
        if problems:
            raise StreamAbort(ErrorCode.INVALID_OPEN, "invalid stream options: " + "; ".join(problems))
        return replace(
            options,
            idle_timeout_s=min(options.idle_timeout_s or self.default_idle_timeout_s, self.max_idle_timeout_s),
            resume_window_s=min(options.resume_window_s, self.max_resume_window_s),
            mask_size=mask_size,
            outputs=options.outputs or DEFAULT_OUTPUTS,  # echoed as sent: results carry the default outputs
            frame_fit=frame_fit,
        )


def clamped_options(asked: StreamOptions, given: StreamOptions) -> dict[str, dict[str, float]]:
    """The timeouts of ``asked`` (an open's options) that ``given`` (the effective ones) lowered to the server's
    maximum, for the ``stream opened`` log line: ``{name: {"asked": value, "given": value}}``, empty when none."""
    return {
        name: {"asked": getattr(asked, name), "given": getattr(given, name)}
        for name in ("idle_timeout_s", "resume_window_s")
        if getattr(asked, name) > getattr(given, name)
    }


def options_for_log(options: StreamOptions) -> dict[str, object]:
    """A stream's effective options as a log field (the resume window has a field of its own): the idle timeout,
    live mode, mask size, outputs by name, soft mask type, frame fit and staleness limit."""
    return {
        "idle_timeout_s": options.idle_timeout_s,
        "live": options.live,
        "mask_size": list(options.mask_size) if options.mask_size else None,
        "outputs": sorted(output.name.lower() for output in options.outputs or DEFAULT_OUTPUTS),
        "soft_masks_uint8": options.soft_masks_uint8,
        "frame_fit": options.frame_fit.fit_name,
        "max_staleness_s": options.max_staleness_s,
    }
