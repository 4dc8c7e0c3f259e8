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
    by plugin 'demo') at FILE:LINE"``: the component is the one whose method the innermost traceback frame outside
    torch with a component as its ``self`` runs (so two components of one module are told apart), or failing that
    the one whose module that frame's code belongs to; the place is the innermost frame outside torch (a helper
    the method called). ``"at FILE:LINE"`` for that place when no component is found; ``""`` without such a frame.
    """
    by_instance = {id(getattr(model, role)): role for role in model.specs}
    by_module = {type(getattr(model, role)).__module__: role for role in model.specs}
    method_role = module_role = None
    place: tuple[str, int] | None = None
    for frame, line in traceback.walk_tb(error.__traceback__):  # outermost first
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".")[0] == "torch":
            continue
        place = (frame.f_code.co_filename, line)
        method_role = by_instance.get(id(frame.f_locals.get("self")), method_role)
        module_role = by_module.get(module, module_role)
    if place is None:
        return ""
    role = method_role or module_role
    if role is None:
        return f"at {place[0]}:{place[1]}"
    return f"in {component_name(model, role)} at {place[0]}:{place[1]}"
