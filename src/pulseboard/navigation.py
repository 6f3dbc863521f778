"""The pages the navigation offers, and the switch that turns demo pages off.

The main navigation holds the product's pages; the example pages (what a team might
build on it, such as a pricing page) sit apart under "Examples".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import abort, current_app
from flask_login import current_user


@dataclass(frozen=True)
class NavItem:
    key: str  # the name DEMO_PAGES uses
    endpoint: str
    label: str
    icon: str  # a Bootstrap Icons name
    login_required: bool = False
    admin_only: bool = False
    always_on: bool = False  # part of the product, not a demo page

    def visible(self) -> bool:
        if not self.always_on and self.key not in current_app.config["DEMO_PAGES"]:
            return False
        if self.admin_only:
            return current_user.is_authenticated and current_user.is_admin
        return current_user.is_authenticated or not self.login_required


NAV_ITEMS = (
    NavItem("dashboard", "main.dashboard", "Dashboard", "speedometer2", login_required=True),
    NavItem("live-stream", "stream.live", "Live stream", "broadcast", login_required=True),
    NavItem(
        "notices", "stream.notices", "Notices", "megaphone", login_required=True, always_on=True
    ),
    NavItem("docs", "main.docs", "Docs", "journal-text"),
    NavItem("admin", "admin.index", "Admin", "shield-lock", admin_only=True, always_on=True),
    NavItem("system", "admin.system", "System", "activity", admin_only=True, always_on=True),
)
# Under "Examples" rather than in the main navigation.
EXAMPLE_ITEMS = (
    NavItem("pricing", "main.pricing", "Pricing", "tag"),
    NavItem("design-system", "main.design_system", "Design system", "palette"),
)
# Reached from the account menu rather than the main navigation.
ACCOUNT_ITEMS = (
    NavItem("profile", "main.profile", "Profile", "person-circle", login_required=True),
    NavItem("settings", "settings.index", "Settings", "gear", login_required=True, always_on=True),
)


def demo_page(key: str):
    """404 a demo page that the configuration (DEMO_PAGES) left out."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if key not in current_app.config["DEMO_PAGES"]:
                abort(404)
            return view(*args, **kwargs)

        return wrapper

    return decorator
