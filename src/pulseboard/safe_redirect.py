"""Redirect targets taken from the request, reduced to paths on this site."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for


def local_target(target: str | None, fallback_endpoint: str) -> str:
    """``target`` when it is a plain local path, else the fallback page's URL.

    Browsers treat ``//host``, ``/\\host`` and some control characters as another
    site, so only a single leading slash followed by a normal character passes.
    """
    if target and _is_local_path(target):
        return target
    return url_for(fallback_endpoint)


def _is_local_path(target: str) -> bool:
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
