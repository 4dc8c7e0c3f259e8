"""2D rigid-disc physics: constant velocity, elastic bounces off the arena walls and off each other.

Objects collide as discs of radius ``collider`` (mass proportional to sprite area) and bounce off the walls with
their full half-size, so sprites always stay inside the frame. The disc ignores the outline: two thin shapes
(diamond, triangle, star) can bounce while their pixels are still a few pixels apart (up to about 6 px between
15-19 px sprites at 64x64 in a sample of 1,500 object events, 1 in 10 of them over 1.5 px), so an object event
marks touching discs, not touching outlines. Plain Python floats are used on purpose: with at most a handful of
objects per video this is faster than numpy scalar arithmetic.

A step is event-driven: it finds the earliest moment within the frame at which two approaching discs touch or a
body reaches a wall (the time of impact, solved exactly for constant velocities), moves every body to that
moment, bounces the pair or the body there, and repeats until the frame's time is used up. So fast objects bounce
where their discs first touch, even when they would meet and part again, or cross, within one frame (a test at
the end of the step misses those). After the events, contacts that remain are resolved in passes, as a safety
net: pairs, then walls, repeated while colliders still overlap, up to :data:`MAX_PASSES`. They act on objects
placed overlapping at the start (only on frames too small to place them apart) and on jams, where several
objects pressed together use up :data:`MAX_EVENTS` within one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_PASSES = 8
"""Most contact-resolution passes per step, after its events."""

MAX_EVENTS = 64
"""Most bounces (pair or wall) handled at their time of impact within one step."""

_OVERLAP_TOLERANCE = 1e-6
"""Collider overlap (pixels) below which a pair counts as resolved."""


@dataclass
class Body:
    """Mutable state of one object in the arena (pixel units, x right, y down).

    Attributes:
        x: Centre x.
        y: Centre y.
        vx: Velocity x in pixels per frame.
        vy: Velocity y in pixels per frame.
        half: Half the sprite side; walls keep ``half <= x <= width - half``.
        collider: Collision radius against other objects.
        mass: Mass (the sprite's pixel area).
    """

    x: float
    y: float
    vx: float
    vy: float
    half: float
    collider: float
    mass: float


@dataclass(frozen=True)
class Contact:
    """A collision found during one step.

    Attributes:
        kind: ``"wall"`` or ``"object"``.
        bodies: Indices into the body list (one for a wall, two, ascending, for an object pair).
        wall: For wall contacts, which wall: ``"left"``, ``"right"``, ``"top"`` or ``"bottom"``; else ``None``.
    """

    kind: str
    bodies: tuple[int, ...]
    wall: str | None = None


def collide_pair(a: Body, b: Body) -> bool:
    """Applies an elastic impulse if the discs of ``a`` and ``b`` overlap and approach each other.

    Momentum and kinetic energy are conserved exactly (up to float rounding). Overlapping discs are also pushed
    apart along the line of centres, mass-weighted, which changes positions only.

    Returns:
        Whether an impulse was applied (a collision event).
    """
    dx, dy = b.x - a.x, b.y - a.y
    dist2 = dx * dx + dy * dy
    reach = a.collider + b.collider
    if dist2 >= reach * reach or dist2 == 0.0:
        return False
    total = a.mass + b.mass
    dist = math.sqrt(dist2)
    push = reach - dist
    a.x -= dx / dist * push * b.mass / total
    a.y -= dy / dist * push * b.mass / total
    b.x += dx / dist * push * a.mass / total
    b.y += dy / dist * push * a.mass / total
    return bounce_pair(a, b)


def bounce_pair(a: Body, b: Body) -> bool:
    """Applies the elastic impulse of two discs along their line of centres if they approach each other.

    Momentum and kinetic energy are conserved exactly (up to float rounding); positions do not change.

    Returns:
        Whether an impulse was applied (``False`` for separating discs or coincident centres).
    """
    dx, dy = b.x - a.x, b.y - a.y
    dist2 = dx * dx + dy * dy
    closing = (b.vx - a.vx) * dx + (b.vy - a.vy) * dy
    if closing >= 0.0 or dist2 == 0.0:
        return False  # separating, or no line of centres
    total = a.mass + b.mass
    k = 2.0 * closing / (dist2 * total)
    a.vx += k * b.mass * dx
    a.vy += k * b.mass * dy
    b.vx -= k * a.mass * dx
    b.vy -= k * a.mass * dy
    return True


def time_of_impact(a: Body, b: Body) -> float:
    """Time (in frames, from now) at which the discs of ``a`` and ``b`` touch while approaching.

    Returns:
        0 for discs that already overlap or touch and approach each other; ``math.inf`` for discs that separate,
        move in parallel or pass each other without touching.
    """
    dx, dy = b.x - a.x, b.y - a.y
    ux, uy = b.vx - a.vx, b.vy - a.vy
    closing = ux * dx + uy * dy
    if closing >= 0.0:
        return math.inf
    reach = a.collider + b.collider
    gap2 = dx * dx + dy * dy - reach * reach
    if gap2 <= 0.0:
        return 0.0
    speed2 = ux * ux + uy * uy
    # |d + u t|^2 = reach^2  <=>  speed2 t^2 + 2 closing t + gap2 = 0; the earlier root is the first touch.
    discriminant = closing * closing - speed2 * gap2
    if discriminant < 0.0:
        return math.inf
    return gap2 / (-closing + math.sqrt(discriminant))  # the earlier root, written to avoid cancellation


def overlap(a: Body, b: Body) -> float:
    """How far the colliders of ``a`` and ``b`` interpenetrate, in pixels (0 when apart or touching)."""
    return max(0.0, a.collider + b.collider - math.hypot(b.x - a.x, b.y - a.y))


def _bounce_axis(pos: float, vel: float, half: float, extent: float) -> tuple[float, float, int]:
    """Keeps one coordinate between the walls at ``half`` and ``extent - half``; returns (pos, vel, wall hit).

    A body moving into a wall is reflected off it (position mirrored, velocity flipped) and the wall hit is -1 for
    the low wall or +1 for the high one. A body that is past a wall while already moving away from it (another
    object pushed it there) is only put back on the wall: no bounce, wall hit 0.
    """
    low, high = half, extent - half
    if pos < low:
        return (min(2 * low - pos, high), -vel, -1) if vel < 0 else (low, vel, 0)
    if pos > high:
        return (max(2 * high - pos, low), -vel, 1) if vel > 0 else (high, vel, 0)
    return pos, vel, 0


def _wall_time(pos: float, vel: float, half: float, extent: float) -> tuple[float, int]:
    """Time until a body moving along one axis reaches a wall, and which (-1 low, +1 high; ``inf`` and 0: none)."""
    if vel < 0.0:
        return max(0.0, (pos - half) / -vel), -1
    if vel > 0.0:
        return max(0.0, (extent - half - pos) / vel), 1
    return math.inf, 0


def _advance(bodies: list[Body], dt: float) -> None:
    for body in bodies:
        body.x += body.vx * dt
        body.y += body.vy * dt


def _next_event(
    bodies: list[Body], pairs: list[tuple[int, int]], width: float, height: float
) -> tuple[float, Contact | None]:
    """The earliest bounce from now: (time, contact), or (``inf``, ``None``) when nothing will touch."""
    first, event = math.inf, None
    for i, j in pairs:
        when = time_of_impact(bodies[i], bodies[j])
        if when < first:
            first, event = when, Contact("object", (i, j))
    for i, body in enumerate(bodies):
        when, side = _wall_time(body.x, body.vx, body.half, width)
        if when < first:
            first, event = when, Contact("wall", (i,), "left" if side < 0 else "right")
        when, side = _wall_time(body.y, body.vy, body.half, height)
        if when < first:
            first, event = when, Contact("wall", (i,), "top" if side < 0 else "bottom")
    return first, event


def _bounce(bodies: list[Body], contact: Contact, width: float, height: float) -> bool:
    """Applies one event found by :func:`_next_event` at its time of impact; returns whether anything bounced."""
    if contact.kind == "object":
        i, j = contact.bodies
        return bounce_pair(bodies[i], bodies[j])
    body = bodies[contact.bodies[0]]
    if contact.wall in ("left", "right"):
        body.x = body.half if contact.wall == "left" else width - body.half
        body.vx = -body.vx
    else:
        body.y = body.half if contact.wall == "top" else height - body.half
        body.vy = -body.vy
    return True


def step(bodies: list[Body], width: float, height: float) -> list[Contact]:
    """Advances all bodies by one frame: bounces at their times of impact, then resolves leftover contacts in
    passes (module docstring).

    Returns:
        The collisions that happened during this step (each pair or wall at most once), in the order found.
    """
    contacts: list[Contact] = []
    pairs = [(i, j) for i in range(len(bodies)) for j in range(i + 1, len(bodies))]
    remaining = 1.0
    for _ in range(MAX_EVENTS):
        when, event = _next_event(bodies, pairs, width, height)
        if event is None or when >= remaining:
            break
        _advance(bodies, when)
        remaining -= when
        if _bounce(bodies, event, width, height):
            _add(contacts, event)
    _advance(bodies, remaining)
    for _ in range(MAX_PASSES):
        if all(overlap(bodies[i], bodies[j]) <= _OVERLAP_TOLERANCE for i, j in pairs) and all(
            _inside(body, width, height) for body in bodies
        ):
            break
        for i, j in pairs:
            if collide_pair(bodies[i], bodies[j]):
                _add(contacts, Contact("object", (i, j)))
        for i, body in enumerate(bodies):
            body.x, body.vx, hit_x = _bounce_axis(body.x, body.vx, body.half, width)
            body.y, body.vy, hit_y = _bounce_axis(body.y, body.vy, body.half, height)
            if hit_x:
                _add(contacts, Contact("wall", (i,), "left" if hit_x < 0 else "right"))
            if hit_y:
                _add(contacts, Contact("wall", (i,), "top" if hit_y < 0 else "bottom"))
    return contacts


def _inside(body: Body, width: float, height: float) -> bool:
    return body.half <= body.x <= width - body.half and body.half <= body.y <= height - body.half


def _add(contacts: list[Contact], contact: Contact) -> None:
    if contact not in contacts:
        contacts.append(contact)
