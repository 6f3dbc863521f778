"""A notice's levels, named once: the admin form, the notices list and the toasts
(static/js/notices.js reads this table from the page) all call a level the same."""

from __future__ import annotations

# level → how people see it; the level itself also names the Bootstrap colour.
NOTICE_LEVELS = {
    "info": {"label": "Info", "icon": "info-circle-fill"},
    "success": {"label": "Success", "icon": "check-circle-fill"},
    "warning": {"label": "Warning", "icon": "exclamation-triangle-fill"},
    "danger": {"label": "Alert", "icon": "x-octagon-fill"},
}


def notice_level(value: object) -> str:
    """``value`` if it is a level, else "info": a stored notice shows even with an odd one."""
    return value if isinstance(value, str) and value in NOTICE_LEVELS else "info"
