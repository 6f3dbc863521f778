"""/brand.css: the configured brand colour as Bootstrap variables.

Served as a stylesheet rather than an inline ``<style>`` so the Content
Security Policy can forbid inline styles.
"""

from __future__ import annotations

import hashlib

from flask import current_app, render_template, request

from . import bp

Rgb = tuple[int, int, int]
BLACK: Rgb = (0, 0, 0)
WHITE: Rgb = (255, 255, 255)


def _parse(hex_color: str) -> Rgb:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def _mix(rgb: Rgb, other: Rgb, weight: float) -> Rgb:
    """``weight`` of ``other`` blended into ``rgb`` (Bootstrap's shade-color/tint-color)."""
    return tuple(round(c * (1 - weight) + o * weight) for c, o in zip(rgb, other, strict=True))


def _hex(rgb: Rgb) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _triplet(rgb: Rgb) -> str:
    return ", ".join(map(str, rgb))


def _readable_text(rgb: Rgb) -> str:
    luminance = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255
    return "#000" if luminance > 0.6 else "#fff"


@bp.get("/brand.css")
def brand_css():
    color = current_app.config["BRAND_PRIMARY_COLOR"]
    etag = hashlib.sha256(color.encode()).hexdigest()[:16]
    if request.if_none_match.contains(etag):
        return "", 304
    rgb = _parse(color)
    dark_emphasis = _mix(rgb, WHITE, 0.4)
    css = render_template(
        "brand.css",
        color=color,
        rgb=_triplet(rgb),
        text=_readable_text(rgb),
        hover=_hex(_mix(rgb, BLACK, 0.15)),
        active=_hex(_mix(rgb, BLACK, 0.2)),
        subtle=_hex(_mix(rgb, WHITE, 0.8)),
        emphasis=_hex(_mix(rgb, BLACK, 0.6)),
        border_subtle=_hex(_mix(rgb, WHITE, 0.6)),
        dark_subtle=_hex(_mix(rgb, BLACK, 0.8)),
        dark_border_subtle=_hex(_mix(rgb, BLACK, 0.6)),
        dark_emphasis=_hex(dark_emphasis),
        dark_emphasis_rgb=_triplet(dark_emphasis),
    )
    response = current_app.response_class(css, mimetype="text/css")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response
