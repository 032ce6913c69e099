"""Text rendering with PIL: fonts (Latin and CJK), glyph coverage, and the three synthesis styles of Qwen-Image.

Qwen-Image (arXiv 2508.02324, section "Data Synthesis") synthesises text images three ways: *pure rendering* on
simple backgrounds, *compositional rendering* of text on paper/boards placed in scenes, and *complex rendering* in
structured layouts. :func:`render` draws one :class:`RenderSpec` in any of these styles (plus ``none``: shapes, no
text, for the curriculum's non-text stage). Every random choice lives in the spec (made by ``qwenkit.image.synth``),
so rendering is a pure function of the spec.

A sample whose text a font cannot draw is rejected before rendering (:func:`font_covers`): a CJK string drawn with a
Latin font becomes tofu boxes that an OCR model reads as some other character.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LATIN_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
)
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
)

COLORS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "red": (200, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 60, 200),
    "yellow": (240, 210, 40),
    "orange": (240, 130, 20),
    "purple": (130, 40, 160),
    "gray": (128, 128, 128),
}
STYLES = ("none", "pure", "compositional", "layout")
SHAPES = ("box", "circle", "bar")


class FontError(RuntimeError):
    """No usable font for a script; the message names the Debian package to install."""


def is_cjk(char: str) -> bool:
    """True for CJK unified ideographs, CJK punctuation and full-width forms (what a Latin font cannot draw)."""
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or 0x3000 <= code <= 0x303F


def available_fonts() -> dict[str, list[str]]:
    """Installed font files by script: ``{"latin": [...], "cjk": [...]}`` (CJK fonts also draw Latin)."""
    return {
        "latin": [p for p in LATIN_FONT_CANDIDATES if Path(p).is_file()],
        "cjk": [p for p in CJK_FONT_CANDIDATES if Path(p).is_file()],
    }


def fonts_for(text: str) -> list[str]:
    """Fonts able to draw ``text``: Latin fonts for Latin text, CJK fonts when any character is CJK."""
    fonts = available_fonts()
    if any(is_cjk(c) for c in text):
        if not fonts["cjk"]:
            raise FontError(
                f"no CJK font found for {text!r} (looked for {list(CJK_FONT_CANDIDATES)}); "
                "install one: apt-get install -y fonts-wqy-zenhei"
            )
        return fonts["cjk"]
    if not fonts["latin"] and not fonts["cjk"]:
        raise FontError("no font found; install one: apt-get install -y fonts-dejavu-core")
    return fonts["latin"] or fonts["cjk"]


@functools.lru_cache(maxsize=256)
def load_font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=4096)
def _glyph_differs_from_notdef(path: str, char: str) -> bool:
    font = load_font(path, 24)
    mask = np.asarray(font.getmask(char))
    notdef = np.asarray(font.getmask("\uffff"))
    return mask.shape != notdef.shape or not np.array_equal(mask, notdef)


def font_covers(path: str, text: str) -> bool:
    """True when ``path`` has a real glyph for every non-space character of ``text``.

    A missing glyph is drawn as the font's ``.notdef`` box, so a character whose mask equals that of U+FFFF (never
    in a font) is missing: DejaVu has no 猫, WenQuanYi Zen Hei has it.
    """
    return all(_glyph_differs_from_notdef(path, c) for c in text if not c.isspace())


@dataclass(frozen=True)
class RenderSpec:
    """Everything :func:`render` needs; made by ``qwenkit.image.synth`` from a seeded RNG."""

    style: str
    text: str
    width: int
    height: int
    font: str = ""
    fg: str = "black"
    bg: str = "white"
    rotation_deg: float = 0.0
    texture: str = "plain"
    """``plain`` | ``noise`` | ``gradient`` (background of pure rendering)."""
    shape: str = "box"
    """What ``style="none"`` draws."""
    board: str = "white"
    """Colour of the paper/sign of compositional rendering (the text colour is ``fg``)."""
    offset: tuple[float, float] = (0.0, 0.0)
    """Jitter of the text block, as a fraction of the free space (-1..1 on each axis)."""
    noise_seed: int = 0
    max_font_px: int = 0
    """Largest font size tried (0 = as large as fits)."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def lines(self) -> list[str]:
        return self.text.split("\n") if self.text else []


def fit_font_size(font_path: str, lines: list[str], box_w: int, box_h: int, max_px: int = 0,
                  spacing: float = 0.15) -> int:
    """The largest font size (px) at which ``lines`` fit in a ``box_w x box_h`` box; at least 6."""
    hi = max_px or max(6, box_h)
    lo, best = 6, 6
    while lo <= hi:
        mid = (lo + hi) // 2
        w, h = _block_size(font_path, lines, mid, spacing)
        if w <= box_w and h <= box_h:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _block_size(font_path: str, lines: list[str], size: int, spacing: float) -> tuple[int, int]:
    font = load_font(font_path, size)
    widths, heights = [], []
    for line in lines:
        left, top, right, bottom = font.getbbox(line or " ")
        widths.append(right - left)
        heights.append(bottom - top)
    gap = int(round(size * spacing))
    return max(widths, default=0), sum(heights) + gap * max(0, len(lines) - 1)


def _draw_block(image, spec: RenderSpec, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    """Draw the text lines centred (with jitter) inside ``box`` = (x0, y0, x1, y1), rotated by ``spec.rotation_deg``."""
    from PIL import Image, ImageDraw

    lines = spec.lines()
    x0, y0, x1, y1 = box
    box_w, box_h = x1 - x0, y1 - y0
    # rotation shrinks the box the text may use so that the rotated block still fits
    angle = math.radians(abs(spec.rotation_deg))
    shrink = 1.0 / (math.cos(angle) + math.sin(angle) * max(box_h, 1) / max(box_w, 1)) if angle else 1.0
    size = fit_font_size(spec.font, lines, int(box_w * shrink), int(box_h * shrink), spec.max_font_px)
    font = load_font(spec.font, size)
    spacing = int(round(size * 0.15))
    block_w, block_h = _block_size(spec.font, lines, size, 0.15)
    layer = Image.new("L", (max(1, block_w), max(1, block_h)), 0)
    draw = ImageDraw.Draw(layer)
    y = 0
    for line in lines:
        left, top, right, bottom = font.getbbox(line or " ")
        draw.text(((block_w - (right - left)) / 2 - left, y - top), line, fill=255, font=font)
        y += bottom - top + spacing
    if spec.rotation_deg:
        layer = layer.rotate(spec.rotation_deg, resample=Image.BICUBIC, expand=True)
    free_x, free_y = max(0, box_w - layer.width), max(0, box_h - layer.height)
    px = x0 + int(free_x / 2 * (1 + spec.offset[0]))
    py = y0 + int(free_y / 2 * (1 + spec.offset[1]))
    image.paste(Image.new("RGB", layer.size, color), (px, py), layer)


def _background(spec: RenderSpec):
    from PIL import Image

    base = np.array(COLORS[spec.bg], dtype=np.float32)
    if spec.texture == "plain":
        pixels = np.broadcast_to(base, (spec.height, spec.width, 3)).copy()
    elif spec.texture == "gradient":
        ramp = np.linspace(-25, 25, spec.width, dtype=np.float32)[None, :, None]
        pixels = np.broadcast_to(base, (spec.height, spec.width, 3)) + ramp
    elif spec.texture == "noise":
        rng = np.random.default_rng(spec.noise_seed)
        pixels = base + rng.normal(0, 12, (spec.height, spec.width, 1)).astype(np.float32)
    else:
        raise ValueError(f"unknown texture {spec.texture!r}; use plain, noise or gradient")
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _scene(spec: RenderSpec):
    """A scene-like backdrop: sky gradient over ground, with a board (sign/label/paper) that carries the text."""
    from PIL import Image, ImageDraw

    w, h = spec.width, spec.height
    sky = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array(COLORS[spec.bg], np.float32), np.array(COLORS["gray"], np.float32)
    pixels = np.broadcast_to(top * (1 - sky) + bottom * sky, (h, w, 3))
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    horizon = int(h * 0.8)
    draw.rectangle((0, horizon, w, h), fill=COLORS["green"] if spec.bg != "green" else COLORS["gray"])
    margin_x, margin_y = max(1, w // 12), max(1, h // 10)
    board = (margin_x, margin_y, w - margin_x, horizon)
    if spec.extra.get("post", True):
        post_w = max(1, w // 16)
        draw.rectangle((w // 2 - post_w, horizon - 2, w // 2 + post_w, h), fill=(90, 60, 30))
    draw.rectangle(board, fill=COLORS[spec.board], outline=(60, 40, 20), width=max(1, min(w, h) // 32))
    return image, board


def render(spec: RenderSpec):
    """Draw ``spec`` as an RGB ``PIL.Image`` of ``spec.width x spec.height``."""
    from PIL import ImageDraw

    if spec.style not in STYLES:
        raise ValueError(f"unknown render style {spec.style!r}; use one of {STYLES}")
    if spec.style != "none" and not spec.font:
        raise ValueError("a text render needs RenderSpec.font (a font file path; see qwenkit.image.render.fonts_for)")
    if spec.style != "none" and not font_covers(spec.font, spec.text):
        raise FontError(f"font {spec.font} cannot draw every character of {spec.text!r}; choose one from fonts_for()")
    if spec.style == "none":
        image = _background(spec)
        draw = ImageDraw.Draw(image)
        w, h = spec.width, spec.height
        cx, cy = w / 2 * (1 + 0.4 * spec.offset[0]), h / 2 * (1 + 0.4 * spec.offset[1])
        rx, ry = w * 0.3, h * 0.3
        if spec.shape == "box":
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=COLORS[spec.fg])
        elif spec.shape == "circle":
            r = min(rx, ry)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLORS[spec.fg])
        elif spec.shape == "bar":
            draw.rectangle((cx - rx, cy - ry / 3, cx + rx, cy + ry / 3), fill=COLORS[spec.fg])
        else:
            raise ValueError(f"unknown shape {spec.shape!r}; use one of {SHAPES}")
        return image
    if spec.style == "compositional":
        image, (x0, y0, x1, y1) = _scene(spec)
        pad_x, pad_y = max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 8)
        _draw_block(image, spec, (x0 + pad_x, y0 + pad_y, x1 - pad_x, y1 - pad_y), COLORS[spec.fg])
        return image
    image = _background(spec)
    if spec.style == "layout":
        # a structured template: a header band behind the first line (a slide title), body lines below
        draw = ImageDraw.Draw(image)
        lines = spec.lines()
        header_h = spec.height // (len(lines) + 1) if len(lines) > 1 else 0
        if header_h:
            draw.rectangle((0, 0, spec.width, header_h + 2), fill=COLORS[spec.board])
    margin_x, margin_y = max(1, spec.width // 16), max(1, spec.height // 16)
    _draw_block(image, spec, (margin_x, margin_y, spec.width - margin_x, spec.height - margin_y), COLORS[spec.fg])
    return image
