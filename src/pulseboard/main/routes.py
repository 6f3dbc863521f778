"""Landing, onboarding and the demo pages."""

from __future__ import annotations

from flask import current_app, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..config import THEMES
from ..extensions import csrf, db
from ..navigation import demo_page
from ..safe_redirect import local_target
from ..templating import THEME_COOKIE
from . import bp

ONE_YEAR = 365 * 24 * 3600


def welcome_wanted() -> bool:
    return current_app.config["WELCOME_ENABLED"] and current_user.welcome_enabled


@bp.get("/")
def index():
    if not current_user.is_authenticated:
        return render_template("main/home.html")
    if welcome_wanted():
        return redirect(url_for("main.welcome"))
    return redirect(url_for("main.dashboard"))


@bp.get("/welcome")
@login_required
def welcome():
    if not current_app.config["WELCOME_ENABLED"]:
        return redirect(url_for("main.dashboard"))
    return render_template("main/welcome.html")


@bp.get("/dashboard")
@login_required
@demo_page("dashboard")
def dashboard():
    """The user's first dashboard (a new user's is seeded with the demo streams)."""
    from ..dashboards.routes import first_dashboard, render_dashboard

    return render_dashboard(first_dashboard())


@bp.get("/profile")
@login_required
@demo_page("profile")
def profile():
    return render_template("main/profile.html")


@bp.get("/docs")
@demo_page("docs")
def docs():
    return render_template("main/docs.html")


@bp.get("/pricing")
@demo_page("pricing")
def pricing():
    return render_template("main/pricing.html")


@bp.get("/design-system")
@demo_page("design-system")
def design_system():
    return render_template("main/design_system.html")


@bp.post("/theme")
@csrf.exempt
def set_theme():
    """Remember a colour mode: on the account when signed in, in a cookie otherwise.

    Exempt from CSRF so pages need no token (and anonymous visitors no session):
    a forged request could only change a colour, and SameSite=Lax keeps the
    session cookie off cross-site posts anyway.
    """
    theme = request.form.get("theme", "")
    response = make_response(redirect(local_target(request.form.get("next"), "main.index")))
    if theme not in THEMES:
        return response
    if current_user.is_authenticated:
        current_user.theme = theme
        db.session.commit()
    response.set_cookie(
        THEME_COOKIE,
        theme,
        max_age=ONE_YEAR,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response
