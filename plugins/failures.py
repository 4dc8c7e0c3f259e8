"""Where a model's run failed: the component whose code raised, for messages that would otherwise carry only the
exception's text (a server's one-line start-up error), so a plugin author sees which component and which line."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from plugins.contracts import component_name

if TYPE_CHECKING:
    from plugins.model import VideoSlotModel


def failure_site(model: VideoSlotModel, error: BaseException) -> str:
    """Where ``error`` was raised in ``model``'s components, as ``"in the transition 'damped' (pkg.Damped, registered
    by plugin 'demo') at FILE:LINE"``.

    The component is the one whose method the innermost traceback frame outside torch with a component as its
    ``self`` runs (so two components of one module are told apart), or failing that the one whose module that
    frame's code belongs to. The place is the innermost frame in the component's own package (its line that called
    into numpy or another library, not that library's), else the innermost frame outside torch. ``"at FILE:LINE"``
    for that frame when no component is found; ``""`` without such a frame.
    """
    by_instance = {id(getattr(model, role)): role for role in model.specs}
    by_module = {type(getattr(model, role)).__module__: role for role in model.specs}
    frames = [  # (module, file, line, the frame's self), outermost first, torch's own left out
        (str(frame.f_globals.get("__name__", "")), frame.f_code.co_filename, line, frame.f_locals.get("self"))
        for frame, line in traceback.walk_tb(error.__traceback__)
        if str(frame.f_globals.get("__name__", "")).split(".")[0] != "torch"
    ]
    if not frames:
        return ""
    method_role = module_role = None
    for module, _, _, owner in frames:
        method_role = by_instance.get(id(owner), method_role)
        module_role = by_module.get(module, module_role)
    role = method_role or module_role
    if role is None:
        return f"at {frames[-1][1]}:{frames[-1][2]}"
    package = type(getattr(model, role)).__module__.split(".")[0]
    own = [(file, line) for module, file, line, _ in frames if module.split(".")[0] == package]
    file, line = own[-1] if own else frames[-1][1:3]
    return f"in {component_name(model, role)} at {file}:{line}"
