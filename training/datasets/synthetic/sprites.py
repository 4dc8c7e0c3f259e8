"""Object sprites: hard shape masks and textured colour patches, rasterised once per object.

Shapes are rasterised at pixel centres with a vectorised even-odd polygon test (one numpy pass per polygon edge),
so the per-frame renderer only has to paste precomputed arrays.
"""

from __future__ import annotations

import math

import numpy as np

from training.datasets.synthetic.levels import SHAPES


def _regular_polygon(sides: int, start_deg: float, radius: float = 1.0) -> list[tuple[float, float]]:
    """Vertices (x, y) of a regular polygon around the origin; y points down, angles clockwise from +x."""
    step = 2 * math.pi / sides
    start = math.radians(start_deg)
    return [(radius * math.cos(start + i * step), radius * math.sin(start + i * step)) for i in range(sides)]


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    """Vertices of a star with ``points`` tips on the unit circle (first tip up) and valleys at radius ``inner``."""
    verts = []
    for i in range(2 * points):
        radius = 1.0 if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / points
        verts.append((radius * math.cos(angle), radius * math.sin(angle)))
    return verts


def _cross(half_width: float, extent: float) -> list[tuple[float, float]]:
    """Vertices of a plus sign whose arms are ``2 * half_width`` wide and reach ``extent`` from the centre."""
    w, e = half_width, extent
    return [(-w, -e), (w, -e), (w, -w), (e, -w), (e, w), (w, w), (w, e), (-w, e), (-w, w), (-e, w), (-e, -w), (-w, -w)]


# Polygons in the unit box [-1, 1]^2 (x right, y down). The triangle is shifted down by 0.25 and scaled so that it
# is vertically centred and fills the box about as much as the other shapes.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)],
    "triangle": [(1.15 * x, 1.15 * (y + 0.25)) for x, y in _regular_polygon(3, -90.0)],
    "star": _star(5, 0.45),
    "diamond": [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)],
    "hexagon": _regular_polygon(6, 0.0),
    "cross": _cross(0.32, 0.95),
}


def shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Rasterises ``shape`` into a square boolean mask of side ``diameter`` (pixel-centre sampling).

    Returns:
        bool array [diameter, diameter]; True inside the shape. Every shape covers at least one pixel.

    Raises:
        ValueError: If ``shape`` is not one of ``SHAPES``.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    coords = (np.arange(diameter, dtype=np.float64) + 0.5) / diameter * 2.0 - 1.0  # [d] in (-1, 1)
    y = coords[:, None]  # [d] -> [d, 1]
    x = coords[None, :]  # [d] -> [1, d]
    if shape == "circle":
        mask = (x * x + y * y) <= 1.0  # [d, d]
    else:
        mask = np.zeros((diameter, diameter), dtype=bool)
        verts = _POLYGONS[shape]
        for (x1, y1), (x2, y2) in zip(verts, verts[1:] + verts[:1], strict=True):
            if y1 == y2:
                continue  # a horizontal edge never crosses a horizontal ray
            crosses = (y1 > y) != (y2 > y)  # [d, 1]
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)  # [d, 1]
            mask ^= crosses & (x < x_cross)  # [d, d]
    if not mask.any():
        mask[diameter // 2, diameter // 2] = True
    return mask


def pattern(kind: str, height: int, width: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Draws a [height, width] float pattern in [0, 1].

    Args:
        kind: ``"stripes"`` (random angle), ``"checker"`` (axis-aligned squares) or ``"noise"`` (smooth noise).
        height: Pattern height in pixels.
        width: Pattern width in pixels.
        rng: Source of all randomness.
        scale: Typical feature size (stripe period, checker cell, noise blob) in pixels.

    Raises:
        ValueError: For an unknown ``kind``.
    """
    yy = np.arange(height, dtype=np.float64)[:, None]  # [H] -> [H, 1]
    xx = np.arange(width, dtype=np.float64)[None, :]  # [W] -> [1, W]
    if kind == "stripes":
        angle = rng.uniform(0.0, math.pi)
        period = scale * rng.uniform(0.8, 1.25)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period  # [H, W]
        return np.asarray(np.floor(phase) % 2, dtype=np.float64)
    if kind == "checker":
        cell = max(1.0, scale * rng.uniform(0.4, 0.7))
        offset = rng.uniform(0.0, cell, size=2)
        checks = np.floor((yy + offset[0]) / cell) + np.floor((xx + offset[1]) / cell)  # [H, W]
        return np.asarray(checks % 2, dtype=np.float64)
    if kind == "noise":
        spectrum = np.fft.rfft2(rng.standard_normal((height, width)))  # [H, W // 2 + 1]
        fy = np.fft.fftfreq(height)[:, None]  # [H] -> [H, 1]
        fx = np.fft.rfftfreq(width)[None, :]  # [W // 2 + 1] -> [1, W // 2 + 1]
        sigma = 1.0 / max(scale, 1.0)
        smooth = np.fft.irfft2(spectrum * np.exp(-(fx * fx + fy * fy) / (2 * sigma * sigma)), s=(height, width))
        lo, hi = float(smooth.min()), float(smooth.max())
        return np.asarray((smooth - lo) / max(hi - lo, 1e-12), dtype=np.float64)
    raise ValueError(f"unknown pattern {kind!r}; known patterns: stripes, checker, noise")


def sprite_colours(mask: np.ndarray, rgb: tuple[int, int, int], texture: str, rng: np.random.Generator) -> np.ndarray:
    """Colours a sprite: flat ``rgb`` or ``rgb`` modulated by a texture (dark parts at 45 % brightness).

    Args:
        mask: bool [d, d] sprite mask (only its shape is used).
        rgb: Base colour.
        texture: One of ``TEXTURES``.
        rng: Source of all randomness.

    Returns:
        uint8 [d, d, 3] colour patch (values outside the mask are irrelevant).
    """
    d = mask.shape[0]
    base = np.asarray(rgb, dtype=np.float64)  # [3]
    if texture == "flat":
        shade = np.ones((d, d), dtype=np.float64)
    else:
        shade = 0.45 + 0.55 * pattern(texture, d, d, rng, scale=max(3.0, d / 4))  # [d, d]
    return np.clip(shade[:, :, None] * base, 0, 255).astype(np.uint8)  # [d, d] -> [d, d, 1]; * [3] -> [d, d, 3]


def background_canvas(
    kind: str, height: int, width: int, rng: np.random.Generator, scale: float
) -> tuple[np.ndarray, str]:
    """Draws a background canvas.

    Args:
        kind: ``"plain"``, ``"mild"`` or ``"textured"`` (see ``Level.background``).
        height: Canvas height; larger than the frame when the camera pans.
        width: Canvas width.
        rng: Source of all randomness.
        scale: Typical texture feature size in pixels.

    Returns:
        uint8 [height, width, 3] canvas and the name of the pattern used (``"plain"`` for none).
    """
    dark = rng.uniform(10, 70, size=3)  # [3]
    if kind == "plain":
        canvas = np.broadcast_to(dark, (height, width, 3))  # [3] -> [H, W, 3]
        return np.ascontiguousarray(canvas.astype(np.uint8)), "plain"
    texture = str(rng.choice(["stripes", "checker", "noise"]))
    weight = pattern(texture, height, width, rng, scale)[:, :, None]  # [H, W] -> [H, W, 1]
    if kind == "mild":
        other = np.clip(dark + rng.uniform(15, 30) * rng.choice([-1.0, 1.0], size=3), 0, 255)  # [3]
    else:
        other = rng.uniform(60, 170, size=3)  # [3]
    canvas = (1.0 - weight) * dark + weight * other  # [H, W, 3]
    return np.clip(canvas, 0, 255).astype(np.uint8), texture
