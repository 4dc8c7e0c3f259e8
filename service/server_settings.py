"""The server's effective settings, as its ``settings`` start-up log line gives them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from service.config import ServiceConfig
from service.runner import ModelRunner
from service.sessions import SessionManager

_SETTINGS_SHOWN_OTHERWISE = frozenset({"auth_token", "metrics_listen", "model_name"})
"""Configuration fields :func:`effective_settings` leaves out: the bearer token (a secret), and those it gives as
resolved under another name (``metrics``, ``model``)."""


class ListeningAt(NamedTuple):
    """The ports a server bound: gRPC's, and the metrics endpoint's (``None`` without one)."""

    port: int
    metrics_port: int | None


def effective_settings(
    config: ServiceConfig, runner: ModelRunner, manager: SessionManager, listening: ListeningAt, *, token_auth: bool
) -> dict[str, Any]:
    """What an operator needs to know about a server once it listens, as its ``settings`` start-up log line gives
    it: the bound gRPC and metrics addresses (``metrics``: ``"off"`` without), backend, device, model (name, version,
    directory), threads (``model_threads``: intra-op threads of one model call, 0 the backend's default, ``None`` for
    TensorRT; ``model_instances``: model calls at once; ``decode_threads``), TLS (``off``, ``on`` or ``mutual``),
    bearer-token auth (``token_auth``: ``on``/``off``), the limits ``max_streams``, ``max_streams_per_client`` (0:
    none) and ``max_batch_size`` (as the engine allows it), ``frame_fit``, the fit of streams that choose none, and
    ``frame_fit_from``: where it comes from (``--frame-fit``, ``model`` for the fit the model records under
    ``--frame-fit auto``, or ``no record`` for ``auto`` with a model that records none). Then the limits under their
    flags' names: ``idle_timeout_s`` (a stream's default) and ``max_idle_timeout_s``, ``max_resume_window_s``,
    ``max_pending_frames``, ``max_buffered_reply_bytes``, ``max_total_buffered_reply_bytes`` (as resolved: the
    automatic budget in bytes), ``max_message_bytes``, ``max_image_pixels``, ``max_queue_delay_ms``,
    ``grace_period_s``, ``model_stall_timeout_s`` (0: off) and ``inline_model_max_ms`` as it applies (0 on a device
    other than a CPU, where no call runs inline). Then every other setting of :class:`~service.config.ServiceConfig`
    under its field's name (``max_calls`` as resolved; files as paths; the bearer token itself never).
    """
    card = runner.card
    host = config.listen.rpartition(":")[0]
    metrics = "off"
    if listening.metrics_port is not None:
        metrics = f"{config.metrics_listen.rpartition(':')[0]}:{listening.metrics_port}"
    model_threads = {"torch": config.torch_threads, "onnx": config.onnx_intra_op_threads}.get(config.backend)
    tls = "off" if config.tls_cert is None else "mutual" if config.tls_client_ca is not None else "on"
    settings: dict[str, Any] = {
        "listen": f"{host}:{listening.port}",
        "metrics": metrics,
        "backend": config.backend,
        "device": config.device,
        "model": card.name,
        "model_version": card.version,
        "model_dir": str(config.model_dir),
        "model_threads": model_threads,
        "model_instances": runner.instances,
        "decode_threads": config.decode_threads,
        "tls": tls,
        "auth": "on" if token_auth else "off",
        "max_streams": config.max_streams,
        "max_streams_per_client": config.max_streams_per_client,
        "max_batch_size": runner.max_batch_size,
        "frame_fit": manager.limits.frame_fit_for(card).fit_name,
        "frame_fit_from": _frame_fit_source(config, runner),
        "idle_timeout_s": config.idle_timeout_s,
        "max_idle_timeout_s": config.max_idle_timeout_s,
        "max_resume_window_s": config.max_resume_window_s,
        "max_pending_frames": config.max_pending_frames,
        "max_buffered_reply_bytes": config.max_buffered_reply_bytes,
        "max_total_buffered_reply_bytes": manager.limits.reply_budget_bytes,
        "max_message_bytes": config.max_message_bytes,
        "max_image_pixels": config.max_image_pixels,
        "max_queue_delay_ms": config.max_queue_delay_ms,
        "grace_period_s": config.grace_period_s,
        "model_stall_timeout_s": config.model_stall_timeout_s,
        "inline_model_max_ms": config.inline_model_max_ms if config.inline_below_s() > 0 else 0.0,
    }
    settings["max_calls"] = config.resolved_max_calls
    for field in dataclasses.fields(config):
        if field.name in settings or field.name in _SETTINGS_SHOWN_OTHERWISE:
            continue
        value = getattr(config, field.name)
        settings[field.name] = str(value) if isinstance(value, Path) else value
    return settings


def _frame_fit_source(config: ServiceConfig, runner: ModelRunner) -> str:
    """Where the fit of streams that choose none comes from: the flag, the model's record, or neither."""
    if config.frame_fit != "auto":
        return "--frame-fit"
    return "model" if runner.card.frame_fit else "no record"


__all__ = ["ListeningAt", "effective_settings"]
