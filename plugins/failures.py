"""Where a model's run failed: the component whose code raised, for messages that would otherwise carry only the
exception's text (a server's one-line start-up error), so a plugin author sees which component and which line."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plugins.model import VideoSlotModel


def failure_site(model: VideoSlotModel, error: BaseException) -> str:
    """``"in the transition 'damped' (pkg.Damped, registered by plugin 'demo') at FILE:LINE"`` for the innermost
    traceback frame of ``error`` in the module of one of ``model``'s components; else ``"at FILE:LINE"`` for its
    innermost frame outside torch; ``""`` when it has no such frame."""
    modules = {type(getattr(model, role)).__module__: role for role in model.specs}
    component: tuple[str, str, int] | None = None
    other: tuple[str, int] | None = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module in modules:
            component = (modules[module], frame.f_code.co_filename, line)
        if module.split(".")[0] != "torch":
            other = (frame.f_code.co_filename, line)
    if component is not None:
        role, file, line = component
        cls = type(getattr(model, role))
        return (
            f"in the {role} {model.specs[role].name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin "
            f"{model.component_plugins[role]!r}) at {file}:{line}"
        )
    return "" if other is None else f"at {other[0]}:{other[1]}"
