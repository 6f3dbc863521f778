"""What every template can use, and the headers every response carries."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, Response, current_app, request
from flask_login import current_user
from markupsafe import Markup

from .config import THEMES
from .database import utcnow
from .navigation import ACCOUNT_ITEMS, EXAMPLE_ITEMS, NAV_ITEMS
from .stream.notice_levels import NOTICE_LEVELS, notice_level

THEME_COOKIE = "theme"


def current_theme() -> str:
    """The signed-in user's choice, else the visitor's cookie, else the site default."""
    if current_user.is_authenticated:
        return current_user.theme
    chosen = request.cookies.get(THEME_COOKIE)
    return chosen if chosen in THEMES else current_app.config["UI_DEFAULT_THEME"]


def local_time(moment: datetime | str | None, style: str = "datetime", empty: str = "—") -> Markup:
    """A <time> that clock.js shows in the user's time zone; UTC until it runs.

    ``style``: "datetime", "date" or "time"."""
    if moment is None or moment == "":
        return Markup.escape(empty)
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    shown = {"date": "%Y-%m-%d", "time": "%H:%M:%S"}.get(style, "%Y-%m-%d %H:%M")
    return Markup('<time datetime="{}" data-clock="{}" title="{}">{} UTC</time>').format(
        moment.isoformat().replace("+00:00", "Z"),
        style,
        moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        moment.strftime(shown),
    )


def register(app: Flask) -> None:
    @app.context_processor
    def globals_for_templates():
        return {
            "nav_items": [item for item in NAV_ITEMS if item.visible()],
            "example_items": [item for item in EXAMPLE_ITEMS if item.visible()],
            "account_items": [item for item in ACCOUNT_ITEMS if item.visible()],
            "theme": current_theme(),
            "layout": current_app.config["UI_LAYOUT"],
            "app_name": current_app.config["APP_NAME"],
            "logo_text": current_app.config["BRAND_LOGO_TEXT"],
            "current_year": utcnow().year,
            "notice_levels": NOTICE_LEVELS,
            "notice_level": notice_level,
            "local_time": local_time,
        }

    @app.after_request
    def security_headers(response: Response) -> Response:
        # Nginx sets these too in production; the app sets them so that a
        # development server and any other proxy are just as strict.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy", current_app.config["CONTENT_SECURITY_POLICY"]
            )
            if current_user.is_authenticated:
                # A shared or back-buttoned browser must not show a signed-in page from cache.
                response.headers["Cache-Control"] = "no-store"
        return response
