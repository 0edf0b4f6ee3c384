"""Deterministic synthetic street scenes: the built-in default dataset.

Each scene is a small pinhole-camera street: a vanishing point on the horizon, a road with lane markings
running into it, sidewalks with curbs on both sides, building facades (or a park) beyond the sidewalks with
windows in perspective, a distant skyline, and standing objects drawn far to near: trees, poles (with signs
and lamp arms), persons, parked and driving cars, and unknown clutter labelled void. The image then gets cast
shadows, texture, a global brightness/contrast/colour change, a slight blur and Gaussian noise.

Two properties matter for the active-learning loop built on it:

- it is learnable: classes have characteristic places, shapes and textures, so a tiny CNN trained for a few
  hundred iterations on 96x128 images reaches a useful mIoU;
- colour alone is ambiguous (greys are shared by road, sidewalk, building, pole, silver cars and overcast
  sky; windows reflect the sky; shadows cross class boundaries), so colour superpixels (SLIC) straddle class
  boundaries and the dominant-label annotation of a superpixel has real noise, as on Cityscapes.

Geometry uses world units of one camera height. A point at lateral offset ``X``, height ``Yw`` and depth
``Z`` projects to ``x = vx + k*u*X`` and ``y = vy + k*u*(1 - Yw)`` with ``k = 1/Z`` and ``u`` the pixel
distance from the horizon to the bottom row (``Z = 1`` is the ground seen at the bottom row). Sizes are
fractions of the image, so scenes look alike at 96x128 and at 1024x2048.

Labels: class indices into :data:`CLASSES`, 255 (``IGNORE_INDEX``) for void (unknown clutter and, in some
images, the ego vehicle's hood, as in Cityscapes). Signs and lamp arms on poles are labelled ``pole``; tree
trunks and grass are ``vegetation``; lane markings are ``road``; curbs are ``sidewalk``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from adaspx import IGNORE_INDEX

CLASSES: tuple[str, ...] = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
"""Class names; a label value is an index into this tuple (255 = void)."""

COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (107, 142, 35),
    (70, 130, 180),
    (0, 0, 142),
    (220, 20, 60),
    (153, 153, 153),
)
"""RGB visualisation colour per class (the Cityscapes palette)."""

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(CLASSES))
VOID = IGNORE_INDEX
MIN_SIZE = 32
"""Smallest accepted image height and width."""

_Rng = np.random.Generator
_SHIFT = 4  # fractional bits for cv2 drawing: sub-pixel accurate shapes, so thin poles stay thin
_ONE = 1 << _SHIFT
_LIMIT = float(1 << 26)  # coordinate clamp (in 1/16 px) for points far outside the image

# Base colours (RGB, 0-255); every draw jitters them.
_SKY_CLEAR = ((60, 120, 200), (180, 205, 235))  # top, horizon
_SKY_OVERCAST = ((165, 170, 180), (210, 212, 215))
_BUILDING = (
    (120, 120, 120), (160, 155, 150), (200, 190, 170), (150, 90, 70), (185, 175, 150),
    (95, 100, 105), (215, 210, 205), (170, 130, 100), (130, 140, 150), (175, 160, 125),
)  # fmt: skip
_WINDOW = ((40, 45, 55), (105, 135, 170), (70, 80, 95), (150, 165, 180))
_WINDOW_LIT = (205, 190, 140)
_ROAD = ((95, 95, 100), (110, 108, 105), (80, 82, 88), (125, 125, 128))
_MARKING = ((220, 220, 215), (215, 185, 70))
_SIDEWALK = ((150, 150, 150), (175, 170, 160), (160, 120, 110), (130, 130, 135), (190, 185, 175))
_VEGETATION = ((60, 100, 40), (80, 120, 50), (45, 80, 35), (100, 120, 60), (120, 115, 60), (70, 95, 70))
_TRUNK = (75, 60, 45)
_CAR = (
    (200, 200, 205), (30, 30, 35), (150, 155, 160), (160, 30, 30), (40, 60, 130),
    (50, 80, 60), (110, 110, 115), (180, 160, 120), (90, 40, 40),
)  # fmt: skip
_CAR_GLASS = (45, 50, 60)
_TYRE = (25, 25, 25)
_TAIL_LIGHT = (200, 40, 40)
_SKIN = ((230, 190, 160), (200, 150, 120), (140, 100, 75), (90, 65, 50))
_TROUSERS = ((40, 45, 60), (60, 70, 110), (30, 30, 30), (120, 110, 90), (150, 150, 150))
_POLE = ((120, 120, 120), (80, 80, 85), (40, 45, 40), (150, 150, 145))
_SIGN = ((200, 200, 200), (40, 80, 160), (200, 40, 40), (220, 190, 40))

# Texture amplitudes (fine, medium, coarse multiplicative noise) per kind of surface.
_TX_NONE = (0.0, 0.0, 0.0)
_TX_SKY = (0.0, 0.0, 0.03)
_TX_BUILDING = (0.03, 0.04, 0.08)
_TX_WINDOW = (0.02, 0.0, 0.05)
_TX_ROAD = (0.06, 0.04, 0.08)
_TX_SIDEWALK = (0.06, 0.03, 0.08)
_TX_VEGETATION = (0.18, 0.30, 0.12)
_TX_SMOOTH = (0.02, 0.0, 0.03)
_TX_CLOTH = (0.03, 0.05, 0.0)
_TX_CLUTTER = (0.1, 0.1, 0.1)


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < MIN_SIZE:
            raise ValueError(f"{name} must be at least {MIN_SIZE} pixels, got {value}")


def _jitter(rng: _Rng, rgb, amount: float) -> tuple[float, float, float]:
    """A colour near ``rgb``: one shared brightness shift plus a small per-channel shift."""
    base = np.asarray(rgb, np.float64) + rng.uniform(-amount, amount) + rng.uniform(-amount, amount, 3) / 3
    return tuple(np.clip(base, 0.0, 255.0).tolist())


def _pick(rng: _Rng, palette, amount: float = 15.0) -> tuple[float, float, float]:
    return _jitter(rng, palette[int(rng.integers(len(palette)))], amount)


def _fixed(pts) -> np.ndarray:
    """Float pixel coordinates -> int32 points in cv2's fixed-point format, shape (N, 1, 2)."""
    p = np.clip(np.round(np.asarray(pts, np.float64) * _ONE), -_LIMIT, _LIMIT)
    return p.astype(np.int32).reshape(-1, 1, 2)


class _Painter:
    """Paints object ids into an id map; each object id carries a class, a colour and texture amplitudes.

    Object 0 is the sky. Later shapes cover earlier ones (painter's order), and the image and the label are
    both rendered from the final id map, so they agree exactly.
    """

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.ids = np.zeros((height, width), np.int32)
        self.cls: list[int] = []
        self.rgb: list[tuple[float, float, float]] = []
        self.tex: list[tuple[float, float, float]] = []

    def new(self, cls: int, rgb, tex=_TX_NONE) -> int:
        """Register an object; return its id."""
        self.cls.append(int(cls))
        self.rgb.append(tuple(float(c) for c in rgb))
        self.tex.append(tex)
        return len(self.cls) - 1

    def poly(self, oid: int, pts) -> None:
        cv2.fillPoly(self.ids, [_fixed(pts)], int(oid), cv2.LINE_8, _SHIFT)

    def ellipse(self, oid: int, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> None:
        centre = tuple(int(v) for v in _fixed([[cx, cy]]).ravel())
        axes = (int(round(max(ax, 0.5) * _ONE)), int(round(max(ay, 0.5) * _ONE)))
        cv2.ellipse(self.ids, centre, axes, float(angle), 0.0, 360.0, int(oid), -1, cv2.LINE_8, _SHIFT)

    def bbox(self, pts) -> tuple[int, int, int, int] | None:
        """Image-clipped bounding box (y0, y1, x0, x1) of a polygon, or None when it is outside the image."""
        p = np.asarray(pts, np.float64)
        x0, y0 = np.floor(p.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(p.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


class _Camera:
    """Projection of the street's world coordinates (units of one camera height) onto the image."""

    def __init__(self, height: int, width: int, vx: float, vy: float) -> None:
        self.h, self.w, self.vx, self.vy = height, width, vx, vy
        self.u = height - vy

    def p(self, x_world: float, y_world: float, z: float) -> tuple[float, float]:
        """Image point of world point (lateral X, height Yw, depth Z)."""
        k = 1.0 / z
        return self.vx + k * self.u * x_world, self.vy + k * self.u * (1.0 - y_world)

    def px(self, z: float) -> float:
        """Pixels per world unit at depth Z."""
        return self.u / z

    def wall(self, x_world: float, z0: float, z1: float, y0: float, y1: float) -> list[tuple[float, float]]:
        """Polygon of the rectangle X = x_world, Z in [z0, z1], Yw in [y0, y1] (a facade, a car side)."""
        return [
            self.p(x_world, y0, z0),
            self.p(x_world, y0, z1),
            self.p(x_world, y1, z1),
            self.p(x_world, y1, z0),
        ]

    def front(self, x0: float, x1: float, y0: float, y1: float, z: float) -> list[tuple[float, float]]:
        """Polygon of the rectangle Z = z, X in [x0, x1], Yw in [y0, y1] (a frontal face)."""
        return [self.p(x0, y0, z), self.p(x1, y0, z), self.p(x1, y1, z), self.p(x0, y1, z)]

    def ground(self, x0: float, x1: float, z0: float, z1: float) -> list[tuple[float, float]]:
        """Polygon of the ground rectangle X in [x0, x1], Z in [z0, z1]."""
        return [self.p(x0, 0.0, z0), self.p(x1, 0.0, z0), self.p(x1, 0.0, z1), self.p(x0, 0.0, z1)]


def _noise_field(rng: _Rng, height: int, width: int, rows: int) -> np.ndarray:
    """Smooth unit-variance-ish noise with about ``rows`` cells over the image height, float32 (H, W)."""
    rows = max(2, min(rows, height))
    cols = max(2, min(int(round(rows * width / height)), width))
    cells = rng.standard_normal((rows, cols), dtype=np.float32)
    if (rows, cols) == (height, width):
        return cells
    return cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR)


def _windows(
    painter: _Painter,
    rng: _Rng,
    oid: int,
    bbox: tuple[int, int, int, int] | None,
    grid: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    floor: float,
    spacing: float,
) -> None:
    """Replace the pixels of object ``oid`` that fall on windows by window objects (same class, glass colour).

    ``grid(ys, xs)`` maps pixel rows/columns of the bounding box to wall coordinates (along, up) in world
    units and a mask of where window cells are large enough to show (no aliasing mush in the distance).
    """
    if bbox is None:
        return
    y0, y1, x0, x1 = bbox
    sub = painter.ids[y0:y1, x0:x1]
    mine = sub == oid
    if not mine.any():
        return
    ys, xs = np.arange(y0, y1, dtype=np.float64)[:, None], np.arange(x0, x1, dtype=np.float64)
    along, up, visible = grid(ys, xs)
    col = (along - rng.uniform(0, spacing)) / spacing
    row = up / floor
    w_lo, w_hi = rng.uniform(0.15, 0.3), rng.uniform(0.65, 0.85)
    h_lo, h_hi = rng.uniform(0.25, 0.4), rng.uniform(0.75, 0.9)
    cell_col, cell_row = np.floor(col), np.floor(row)
    fc, fr = col - cell_col, row - cell_row
    win = mine & visible & (up > floor * 0.8) & (fc > w_lo) & (fc < w_hi) & (fr > h_lo) & (fr < h_hi)
    if not win.any():
        return
    glass = painter.new(BUILDING, _pick(rng, _WINDOW, 12.0), _TX_WINDOW)
    lit = painter.new(BUILDING, _jitter(rng, _WINDOW_LIT, 15.0), _TX_WINDOW)
    salt = int(rng.integers(1, 1 << 20))
    cell_hash = (cell_col.astype(np.int64) * 73856093) ^ (cell_row.astype(np.int64) * 19349663 + salt)
    is_lit = (cell_hash % 9) == 0
    sub[win] = glass
    sub[win & is_lit] = lit


def _facade_side(painter: _Painter, cam: _Camera, rng: _Rng, x_wall: float, shaded: bool) -> None:
    """Buildings along one side of the street: a wall at X = x_wall split into buildings along Z."""
    z = 0.15
    z_end = rng.uniform(10.0, 30.0)
    floor = rng.uniform(2.0, 2.6)
    while z < z_end:
        length = rng.uniform(3.0, 12.0)
        if rng.random() < 0.1 and z > 2.0:  # a side street: the skyline and a cross road show through
            z += rng.uniform(2.0, 4.0)
            continue
        top = rng.uniform(3.0, 11.0)
        rgb = np.asarray(_pick(rng, _BUILDING, 18.0)) * (0.72 if shaded else 1.0)
        oid = painter.new(BUILDING, rgb, _TX_BUILDING)
        pts = cam.wall(x_wall, z, z + length, 0.0, top)
        painter.poly(oid, pts)
        spacing = rng.uniform(1.2, 2.5)

        def grid(ys, xs, x_wall=x_wall, floor=floor, spacing=spacing):
            k = np.maximum((xs - cam.vx) / (cam.u * x_wall), 1e-6)
            up = 1.0 - (ys - cam.vy) / (k * cam.u)
            along = 1.0 / k
            visible = (k * k * cam.u * abs(x_wall) * spacing > 4.0) & (k * cam.u * floor > 4.0)
            return along, up, visible

        _windows(painter, rng, oid, painter.bbox(pts), grid, floor, spacing)
        z += length


def _skyline(painter: _Painter, cam: _Camera, rng: _Rng) -> None:
    """Distant frontal buildings and trees standing on the horizon, covering the whole width."""
    z = rng.uniform(12.0, 25.0)
    scale = cam.px(z)
    x = -cam.vx / scale - 1.0
    x_end = (cam.w - cam.vx) / scale + 1.0
    floor = rng.uniform(2.0, 2.6)
    while x < x_end:
        width = rng.uniform(2.0, 7.0)
        kind = rng.random()
        if kind < 0.15:  # a gap: sky down to the horizon
            pass
        elif kind < 0.35:  # a distant tree
            oid = painter.new(VEGETATION, _pick(rng, _VEGETATION, 15.0), _TX_VEGETATION)
            cx, cy = cam.p(x + width / 2, rng.uniform(1.5, 3.0), z)
            painter.ellipse(oid, cx, cy, width / 2 * scale, rng.uniform(1.5, 3.0) * scale)
        else:
            top = rng.uniform(2.0, 12.0)
            oid = painter.new(BUILDING, _pick(rng, _BUILDING, 18.0), _TX_BUILDING)
            pts = cam.front(x, x + width, -0.5, top, z)
            painter.poly(oid, pts)
            spacing = rng.uniform(1.0, 2.0)

            def grid(ys, xs, z=z, spacing=spacing, floor=floor):
                along = np.broadcast_to((xs - cam.vx) / cam.px(z), (ys.shape[0], xs.shape[0]))
                up = 1.0 - (ys - cam.vy) / cam.px(z)
                visible = (cam.px(z) * spacing > 4.0) & (cam.px(z) * floor > 4.0)
                return along, up, np.full(along.shape, visible)

            _windows(painter, rng, oid, painter.bbox(pts), grid, floor, spacing)
        x += width


def _tree(painter: _Painter, cam: _Camera, rng: _Rng, x: float, z: float, shade: np.ndarray) -> None:
    trunk_h = rng.uniform(1.5, 3.0)
    trunk_w = rng.uniform(0.12, 0.25)
    crown = rng.uniform(1.0, 2.2)
    trunk = painter.new(VEGETATION, _jitter(rng, _TRUNK, 15.0), _TX_CLOTH)
    painter.poly(trunk, cam.front(x - trunk_w / 2, x + trunk_w / 2, 0.0, trunk_h + crown * 0.5, z))
    leaves = painter.new(VEGETATION, _pick(rng, _VEGETATION, 15.0), _TX_VEGETATION)
    dark = painter.new(VEGETATION, np.asarray(painter.rgb[leaves]) * 0.7, _TX_VEGETATION)
    s = cam.px(z)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = cam.p(x + rng.uniform(-0.6, 0.6) * crown, trunk_h + crown * rng.uniform(0.4, 1.3), z)
        oid = leaves if rng.random() < 0.7 else dark
        ax, ay = crown * rng.uniform(0.5, 0.9) * s, crown * rng.uniform(0.45, 0.8) * s
        painter.ellipse(oid, cx, cy, ax, ay, rng.uniform(0, 180))
    # its shadow on the ground
    gx, gy = cam.p(x + rng.uniform(-1.0, 1.0), 0.0, z)
    axes = (int(crown * s) + 1, int(crown * s * 0.25) + 1)
    cv2.ellipse(shade, (int(gx), int(gy)), axes, 0.0, 0.0, 360.0, float(rng.uniform(0.6, 0.8)), -1)


def _pole(painter: _Painter, cam: _Camera, rng: _Rng, x: float, z: float, toward_road: float) -> None:
    height = rng.uniform(3.0, 5.5)
    width = rng.uniform(0.05, 0.09)
    oid = painter.new(POLE, _pick(rng, _POLE, 12.0), _TX_SMOOTH)
    painter.poly(oid, cam.front(x - width / 2, x + width / 2, 0.0, height, z))
    extra = rng.random()
    if extra < 0.4:  # a traffic sign
        sign = painter.new(POLE, _pick(rng, _SIGN, 15.0), _TX_SMOOTH)
        size = rng.uniform(0.35, 0.6)
        y0 = rng.uniform(1.6, 2.2)
        if rng.random() < 0.5:
            cx, cy = cam.p(x, y0 + size / 2, z)
            r = size / 2 * cam.px(z)
            painter.ellipse(sign, cx, cy, r, r)
        else:
            painter.poly(sign, cam.front(x - size / 2, x + size / 2, y0, y0 + size, z))
    elif extra < 0.75:  # a street lamp arm
        arm = rng.uniform(0.6, 1.5) * toward_road
        painter.poly(oid, cam.front(min(x, x + arm), max(x, x + arm), height - width, height, z))


def _person(painter: _Painter, cam: _Camera, rng: _Rng, x: float, z: float) -> None:
    s = rng.uniform(1.15, 1.5)  # person height in camera heights
    legs = painter.new(PERSON, _pick(rng, _TROUSERS, 15.0), _TX_CLOTH)
    torso = painter.new(PERSON, rng.uniform(20, 220, 3), _TX_CLOTH)
    head = painter.new(PERSON, _pick(rng, _SKIN, 12.0), _TX_SMOOTH)
    stride = rng.uniform(0.0, 0.06) * s
    painter.poly(legs, cam.front(x - 0.1 * s - stride, x - 0.01 * s, 0.0, 0.5 * s, z))
    painter.poly(legs, cam.front(x + 0.01 * s, x + 0.1 * s + stride, 0.0, 0.5 * s, z))
    painter.poly(torso, cam.front(x - 0.13 * s, x + 0.13 * s, 0.47 * s, 0.84 * s, z))
    painter.poly(torso, cam.front(x - 0.19 * s, x - 0.13 * s, 0.52 * s, 0.82 * s, z))
    painter.poly(torso, cam.front(x + 0.13 * s, x + 0.19 * s, 0.52 * s, 0.82 * s, z))
    cx, cy = cam.p(x, 0.92 * s, z)
    painter.ellipse(head, cx, cy, 0.065 * s * cam.px(z), 0.08 * s * cam.px(z))


def _car(painter: _Painter, cam: _Camera, rng: _Rng, x: float, z: float, shade: np.ndarray) -> None:
    """A car with its near (rear) face at depth z, centred at lateral x; its inner side shows off-centre."""
    width, height, length = rng.uniform(1.35, 1.6), rng.uniform(1.1, 1.35), rng.uniform(3.2, 4.0)
    body = painter.new(CAR, _pick(rng, _CAR, 15.0), _TX_SMOOTH)
    glass = painter.new(CAR, _jitter(rng, _CAR_GLASS, 10.0), _TX_SMOOTH)
    tyre = painter.new(CAR, _jitter(rng, _TYRE, 6.0), _TX_SMOOTH)
    light = painter.new(CAR, _jitter(rng, _TAIL_LIGHT, 20.0), _TX_SMOOTH)
    hw = width / 2
    belt = height * 0.55
    # shadow on the ground around the car's footprint
    shadow = cam.ground(x - hw * 1.1, x + hw * 1.1, z - 0.2, z + length)
    cv2.fillPoly(shade, [_fixed(shadow)], 0.55, cv2.LINE_8, _SHIFT)
    if abs(x) > hw:  # the side facing the camera axis
        side = x - hw if x > 0 else x + hw
        painter.poly(body, cam.wall(side, z, z + length, 0.12, belt))
        painter.poly(body, cam.wall(side, z + 0.5, z + length - 0.8, belt, height))
        painter.poly(glass, cam.wall(side, z + 0.65, z + length - 0.95, belt + 0.05, height - 0.07))
        for zc in (z + 0.65, z + length - 0.7):
            cx, cy = cam.p(side, 0.2, zc)
            k = 1.0 / zc
            painter.ellipse(tyre, cx, cy, max(cam.u * abs(side) * k * k * 0.22, 0.6), 0.2 * cam.px(zc))
    painter.poly(tyre, cam.front(x - hw + 0.05, x - hw + 0.3, 0.0, 0.3, z))
    painter.poly(tyre, cam.front(x + hw - 0.3, x + hw - 0.05, 0.0, 0.3, z))
    painter.poly(body, cam.front(x - hw, x + hw, 0.12, belt, z))
    top_l, top_r = cam.p(x - hw * 0.72, height, z + 0.3), cam.p(x + hw * 0.72, height, z + 0.3)
    painter.poly(body, [cam.p(x - hw * 0.92, belt, z), cam.p(x + hw * 0.92, belt, z), top_r, top_l])
    painter.poly(glass, cam.front(x - hw * 0.72, x + hw * 0.72, belt + 0.06, height - 0.08, z + 0.15))
    painter.poly(light, cam.front(x - hw * 0.95, x - hw * 0.7, belt - 0.2, belt - 0.05, z))
    painter.poly(light, cam.front(x + hw * 0.7, x + hw * 0.95, belt - 0.2, belt - 0.05, z))


def _clutter(painter: _Painter, cam: _Camera, rng: _Rng, x: float, z: float) -> None:
    """Something no class covers (a bin, a board, a bicycle stand): labelled void."""
    oid = painter.new(VOID, rng.uniform(20, 230, 3), _TX_CLUTTER)
    w, h = rng.uniform(0.3, 0.9), rng.uniform(0.4, 1.1)
    painter.poly(oid, cam.front(x - w / 2, x + w / 2, 0.0, h, z))


def generate_scene(rng: _Rng, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        height, width: image size in pixels, each at least :data:`MIN_SIZE`.

    Returns:
        ``(image, label)``: image (H, W, 3) uint8 RGB; label (H, W) uint8 class index into :data:`CLASSES`,
        255 for void.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    _check_size(height, width)
    h, w = int(height), int(width)
    cam = _Camera(h, w, vx=w * rng.uniform(0.38, 0.62), vy=h * rng.uniform(0.36, 0.5))
    painter = _Painter(h, w)
    shade = np.ones((h, w), np.float32)

    overcast = rng.random() < 0.3
    sky_top, sky_horizon = (_jitter(rng, c, 12.0) for c in (_SKY_OVERCAST if overcast else _SKY_CLEAR))
    painter.new(SKY, sky_top, _TX_SKY)  # id 0: the background, coloured by a vertical gradient below
    _skyline(painter, cam, rng)

    # the ground: a cross road everywhere, then the street, its sidewalks and curbs
    road_rgb = _pick(rng, _ROAD, 12.0)
    far, near = 400.0, 0.05
    cross = painter.new(ROAD, road_rgb, _TX_ROAD)
    painter.poly(cross, [(-w, cam.vy + 0.5), (2.0 * w, cam.vy + 0.5), (2.0 * w, 2.0 * h), (-w, 2.0 * h)])
    left_edge, right_edge = -rng.uniform(1.2, 4.0), rng.uniform(1.0, 3.0)
    left_wall = left_edge - rng.uniform(1.2, 3.0)
    right_wall = right_edge + rng.uniform(1.2, 3.0)
    road = painter.new(ROAD, road_rgb, _TX_ROAD)
    painter.poly(road, cam.ground(left_edge, right_edge, near, far))
    curb_rgb = _pick(rng, ((185, 185, 185), (160, 160, 160)), 10.0)
    walls = []
    for edge, wall in ((left_edge, left_wall), (right_edge, right_wall)):
        park = rng.random() < 0.25
        walk = painter.new(SIDEWALK, _pick(rng, _SIDEWALK, 15.0), _TX_SIDEWALK)
        painter.poly(walk, cam.ground(min(edge, wall), max(edge, wall), near, far))
        curb = painter.new(SIDEWALK, curb_rgb, _TX_SIDEWALK)
        inner = edge + (-0.15 if edge < 0 else 0.15)
        painter.poly(curb, cam.ground(min(edge, inner), max(edge, inner), near, far))
        if park:
            grass = painter.new(VEGETATION, _pick(rng, _VEGETATION[:4], 15.0), _TX_VEGETATION)
            outer = wall * 50.0
            painter.poly(grass, cam.ground(min(wall, outer), max(wall, outer), near, rng.uniform(15.0, 40.0)))
        walls.append((edge, wall, park))

    # lane markings: dashed dividers, sometimes solid edge lines
    marking = painter.new(ROAD, _pick(rng, _MARKING, 10.0), _TX_SMOOTH)
    lanes = max(1, int(round((right_edge - left_edge) / rng.uniform(2.3, 3.0))))
    period, dash, phase = rng.uniform(5.0, 8.0), rng.uniform(2.0, 3.5), rng.uniform(0.0, 8.0)
    half = rng.uniform(0.05, 0.08)
    for j in range(1, lanes):
        xl = left_edge + j * (right_edge - left_edge) / lanes
        for z0 in np.arange(0.3 + phase % period, 40.0, period):
            painter.poly(marking, cam.ground(xl - half, xl + half, z0, z0 + dash))
    if rng.random() < 0.5:
        for xl in (left_edge + 0.35, right_edge - 0.35):
            painter.poly(marking, cam.ground(xl - half, xl + half, near, 60.0))

    # beyond the sidewalks: facades, or a park with trees
    shady_left = rng.random() < 0.5  # the sun is behind the left facades: they face away and cast shadow
    stands: list[tuple[float, Callable[[], None]]] = []
    for (_edge, wall, park), is_left in zip(walls, (True, False), strict=True):
        if not park:
            _facade_side(painter, cam, rng, wall, shaded=(is_left == shady_left))
            if rng.random() < 0.3:  # a hedge along the facade
                hedge = painter.new(VEGETATION, _pick(rng, _VEGETATION, 15.0), _TX_VEGETATION)
                hx = wall + (0.4 if is_left else -0.4)
                z0 = rng.uniform(1.0, 6.0)
                painter.poly(hedge, cam.wall(hx, z0, z0 + rng.uniform(3.0, 12.0), 0.0, rng.uniform(0.5, 0.9)))
        else:
            for _ in range(int(rng.integers(2, 6))):
                tx, tz = wall * rng.uniform(1.3, 3.0), rng.uniform(2.0, 25.0)
                stands.append((tz, lambda tx=tx, tz=tz: _tree(painter, cam, rng, tx, tz, shade)))
        for _ in range(int(rng.integers(0, 3))):  # street trees on the sidewalk
            tx, tz = wall + (0.7 if is_left else -0.7), rng.uniform(1.5, 20.0)
            stands.append((tz, lambda tx=tx, tz=tz: _tree(painter, cam, rng, tx, tz, shade)))

    # a shadow cast by the facades across the street
    if rng.random() < 0.5:
        lw, rw = walls[0][1], walls[1][1]
        reach = rng.uniform(0.3, 0.9) * (rw - lw)
        x0, x1 = (lw, lw + reach) if shady_left else (rw - reach, rw)
        z0 = rng.uniform(0.05, 3.0)
        pts = cam.ground(x0, x1, z0, z0 + rng.uniform(5.0, 40.0))
        cv2.fillPoly(shade, [_fixed(pts)], float(rng.uniform(0.45, 0.7)), cv2.LINE_8, _SHIFT)

    # standing objects: poles, persons, cars, clutter
    for _ in range(int(rng.integers(2, 5))):
        left = rng.random() < 0.5
        edge = left_edge if left else right_edge
        px, pz = edge + (-0.35 if left else 0.35), rng.uniform(0.9, 12.0)
        toward = 1.0 if left else -1.0
        stands.append((pz, lambda px=px, pz=pz, t=toward: _pole(painter, cam, rng, px, pz, t)))
    for _ in range(int(rng.integers(1, 6))):
        edge, wall, _park = walls[int(rng.integers(2))]
        if rng.random() < 0.15:  # crossing the road
            sx = rng.uniform(left_edge, right_edge)
        else:
            sx = rng.uniform(min(edge, wall) + 0.3, max(edge, wall) - 0.3)
        sz = rng.uniform(1.5, 12.0)
        stands.append((sz, lambda sx=sx, sz=sz: _person(painter, cam, rng, sx, sz)))
    for _ in range(int(rng.integers(1, 6))):
        if rng.random() < 0.5:  # parked along a curb
            cx = left_edge + 1.0 if rng.random() < 0.5 else right_edge - 1.0
        else:
            lane = int(rng.integers(lanes))
            cx = left_edge + (lane + 0.5) * (right_edge - left_edge) / lanes + rng.uniform(-0.3, 0.3)
        cz = 1.3 + 22.0 * rng.random() ** 1.3  # more near cars than a uniform depth gives
        stands.append((cz, lambda cx=cx, cz=cz: _car(painter, cam, rng, cx, cz, shade)))
    for _ in range(int(rng.poisson(0.8))):
        edge, wall, _park = walls[int(rng.integers(2))]
        vx_, vz = rng.uniform(min(edge, wall) + 0.3, max(edge, wall) - 0.3), rng.uniform(1.5, 10.0)
        stands.append((vz, lambda vx_=vx_, vz=vz: _clutter(painter, cam, rng, vx_, vz)))
    for _z, draw in sorted(stands, key=lambda item: -item[0]):  # far to near; sorted() is stable
        draw()

    if rng.random() < 0.3:  # the ego vehicle's hood, void as in Cityscapes
        hood = painter.new(VOID, _pick(rng, _CAR, 10.0), _TX_SMOOTH)
        cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(1.02, 1.1)
        painter.ellipse(hood, cx, cy, w * 0.75, h * rng.uniform(0.1, 0.16))

    return _render(painter, cam, rng, shade, sky_top, sky_horizon)


def _render(
    painter: _Painter, cam: _Camera, rng: _Rng, shade: np.ndarray, sky_top, sky_horizon
) -> tuple[np.ndarray, np.ndarray]:
    """Id map -> (image, label): colours, texture, sky gradient, shadows, lighting, blur and sensor noise."""
    h, w = painter.h, painter.w
    ids = painter.ids
    label = np.take(np.asarray(painter.cls, np.uint8), ids)
    rgb = np.take(np.asarray(painter.rgb, np.float32), ids, axis=0)
    amp = np.asarray(painter.tex, np.float32)
    texture = np.ones((h, w), np.float32)
    for j, rows in enumerate((96, 24, 6)):  # fine, medium and coarse multiplicative noise
        field = _noise_field(rng, h, w, rows)
        field *= np.take(amp[:, j], ids)
        texture += field

    horizon = min(h, int(cam.vy) + 2)  # the sky never reaches below the horizon
    t = np.clip(np.arange(horizon, dtype=np.float32) / max(cam.vy, 1.0), 0.0, 1.0)[:, None]
    gradient = np.asarray(sky_top, np.float32) * (1.0 - t) + np.asarray(sky_horizon, np.float32) * t
    top = rgb[:horizon]
    np.copyto(top, np.broadcast_to(gradient[:, None, :], top.shape), where=(ids[:horizon] == 0)[..., None])

    blur = np.sqrt(h / 96.0)  # softer than proportional: large images stay sharper
    texture *= cv2.GaussianBlur(shade, (0, 0), 0.8 * blur)
    rgb *= texture[..., None]

    contrast = rng.uniform(0.75, 1.2)
    gain = rng.uniform(0.65, 1.25)
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    rgb -= np.float32(110.0)
    rgb *= np.float32(contrast)
    rgb += np.float32(110.0)
    rgb *= np.float32(gain) * cast
    img = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.4, 0.8) * blur)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(2.0, 7.0))
    img += noise
    np.clip(img, 0.0, 255.0, out=img)
    image = np.rint(img, out=img).astype(np.uint8)
    return image, label


def _child_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """The generator of one image: depends only on (seed, split, index), never on the dataset's size."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, index)))


def _classes_yaml() -> str:
    lines = ["# Synthetic street scenes: label value = index into names; 255 = void", "names:"]
    lines += [f"  - {name}" for name in CLASSES]
    lines.append("colors:")
    lines += [f"  - [{r}, {g}, {b}]" for r, g, b in COLORS]
    return "\n".join(lines) + "\n"


OWNER_MARKER = ".adaspx-synthetic"
"""Written first into a folder the generator fills: the folder is the generator's to write again."""

SUMMARY = "synthetic.json"
"""Written last: the generated dataset is complete (the workflow's ``synthesize_dataset`` output)."""


def write_dataset(
    root: str | Path,
    *,
    train_size: int,
    val_size: int,
    height: int,
    width: int,
    seed: int,
) -> dict:
    """Generate the synthetic dataset in the plain folder layout under ``root``.

    Writes ``images/<id>.png`` (RGB), ``labels/<id>.png`` (single-channel class indices, 255 void),
    ``splits/train.txt`` and ``splits/val.txt`` (ids ``train_0000``..., ``val_0000``...) and ``classes.yaml``.
    Every image comes from its own child seed of ``(seed, split, index)``, so the same arguments give
    byte-identical files and a larger ``train_size`` only adds images.

    Returns:
        A summary: split sizes, image size, seed, class names, pixel counts per class and void pixels.
    """
    for name, value in (("train_size", train_size), ("val_size", val_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _check_size(height, width)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    root = Path(root)
    check_generated_root(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / OWNER_MARKER).write_text("Generated by adaspx (adaspx.synthetic.write_dataset); safe to delete.\n")
    for sub in ("images", "labels", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    counts = np.zeros(256, np.int64)
    for split_index, (split, size) in enumerate((("train", train_size), ("val", val_size))):
        ids = [f"{split}_{i:04d}" for i in range(int(size))]
        for i, image_id in enumerate(ids):
            image, label = generate_scene(_child_rng(int(seed), split_index, i), int(height), int(width))
            Image.fromarray(image).save(root / "images" / f"{image_id}.png")
            Image.fromarray(label).save(root / "labels" / f"{image_id}.png")
            counts += np.bincount(label.ravel(), minlength=256)
        (root / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "classes.yaml").write_text(_classes_yaml())
    summary = {
        "train": int(train_size),
        "val": int(val_size),
        "height": int(height),
        "width": int(width),
        "seed": int(seed),
        "classes": list(CLASSES),
        "class_pixels": {name: int(counts[c]) for c, name in enumerate(CLASSES)},
        "void_pixels": int(counts[VOID]),
    }
    (root / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")  # last: the dataset is complete
    return summary


def check_generated_root(root: str | Path) -> None:
    """Refuse to write into a folder that holds anything but a dataset this module generated.

    The generator owns a folder once it has written :data:`OWNER_MARKER` into it (first, before any image); a
    missing or empty folder is free. Anything else (a user's dataset that ``dataset.root`` points at by mistake)
    stops here, before a file is written or deleted."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: not a folder (dataset.root of a synthetic dataset)")
    classes = root / "classes.yaml"
    if classes.is_file() and classes.read_text() == _classes_yaml():  # generated before the marker existed
        (root / OWNER_MARKER).touch()
    if root.is_dir() and any(root.iterdir()) and not (root / OWNER_MARKER).is_file():
        raise ValueError(
            f"{root}: not empty and not generated by adaspx (no {OWNER_MARKER}): refusing to write a synthetic "
            "dataset into it; point dataset.root at a new folder, or use dataset.kind: folder for a dataset of yours"
        )
