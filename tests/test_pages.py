"""The HTML pages: every page renders in every layout and colour mode, navigation follows
the visitor, and the markup stays within the strict Content Security Policy."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from pulseboard.extensions import db
from pulseboard.models import User

from .conftest import CSRF_INPUT

LAYOUTS = ("topnav", "sidebar", "both")
THEMES = ("light", "dark", "auto")
PUBLIC_PAGES = ("/", "/docs", "/pricing", "/design-system", "/auth/login", "/auth/register")
SIGNED_IN_PAGES = (
    "/welcome",
    "/dashboard",
    "/profile",
    "/docs",
    "/pricing",
    "/design-system",
    "/settings/",
    "/admin/",
    "/live",
)
LOGIN_REQUIRED_PAGES = ("/welcome", "/dashboard", "/profile", "/settings/", "/admin/", "/live")

# What the CSP (script-src 'self'; style-src 'self') would block in the browser.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
STYLE_BLOCK = re.compile(r"<style[\s>]", re.IGNORECASE)
HTML_TAG = re.compile(r"<html[^>]*>")


class FormCollector(HTMLParser):
    """Each <form>'s method and the names of the inputs inside it."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._open = {
                "method": (attrs.get("method") or "get").lower(),
                "action": attrs.get("action"),
                "inputs": set(),
            }
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None:
            self._open["inputs"].add(attrs.get("name"))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def post_forms(html: str) -> list[dict]:
    collector = FormCollector()
    collector.feed(html)
    return [form for form in collector.forms if form["method"] == "post"]


def html_tag(html: str) -> str:
    return HTML_TAG.search(html).group(0)


@pytest.fixture
def layout():
    return "both"


@pytest.fixture
def app_env():
    return {}


@pytest.fixture
def app(make_app, layout, app_env):
    # Overrides conftest's app so that tests can parametrize "layout" and "app_env".
    return make_app(UI_LAYOUT=layout, **app_env)


@pytest.fixture
def signed_in(make_user, auth):
    """A signed-in admin (sees every page); returns the client."""
    make_user(admin=True)
    auth.login()
    return auth.client


def get_page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, f"{path} answered {response.status_code}"
    return response.get_data(as_text=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_public_pages_render_for_anonymous_visitors(client):
    for path in PUBLIC_PAGES:
        html = get_page(client, path)
        assert "· Pulseboard</title>" in html, path


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_page_renders_for_a_signed_in_user(signed_in):
    for path in SIGNED_IN_PAGES:
        html = get_page(signed_in, path)
        assert "· Pulseboard</title>" in html, path
        assert "Ada" in html, path


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("theme", THEMES)
def test_html_tag_carries_the_users_theme(make_user, auth, theme):
    make_user(theme=theme)
    auth.login()
    tag = html_tag(get_page(auth.client, "/dashboard"))
    # "auto" is resolved in the browser by theme.js; the server starts from light.
    assert f'data-bs-theme="{"light" if theme == "auto" else theme}"' in tag
    assert f'data-theme-pref="{theme}"' in tag


@pytest.mark.parametrize("path", LOGIN_REQUIRED_PAGES)
def test_signed_in_pages_send_anonymous_visitors_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/auth/login?next=")


def test_admin_page_is_forbidden_to_members(make_user, auth):
    make_user()
    auth.login()
    response = auth.client.get("/admin/")
    assert response.status_code == 403
    assert "Forbidden" in response.get_data(as_text=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unknown_page_gets_the_styled_404(client):
    response = client.get("/no-such-page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "<title>Page not found · Pulseboard</title>" in html
    assert 'class="error-code"' in html
    assert 'href="/"' in html


def test_theme_choice_is_a_cookie_for_anonymous_visitors(client, auth):
    response = client.post("/theme", data={"theme": "dark", "next": "/docs"})
    assert response.status_code == 302
    assert response.location == "/docs"
    assert "theme=dark" in response.headers["Set-Cookie"]
    assert 'data-bs-theme="dark"' in html_tag(get_page(client, "/docs"))


def test_theme_choice_is_stored_on_the_account(app, make_user, auth):
    make_user()
    auth.login()
    token = auth.csrf_token("/dashboard")
    auth.client.post("/theme", data={"csrf_token": token, "theme": "dark", "next": "/dashboard"})
    with app.app_context():
        user = db.session.scalar(select(User).filter_by(email="ada@example.com"))
        assert user.theme == "dark"


def test_theme_switch_marks_the_active_choice(make_user, auth):
    make_user(theme="dark")
    auth.login()
    html = get_page(auth.client, "/dashboard")
    assert re.search(r'value="dark" class="dropdown-item active" aria-current="true"', html)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_page_needs_inline_script_or_style(client, make_user, auth):
    pages = {path: get_page(client, path) for path in PUBLIC_PAGES}
    make_user(admin=True)
    auth.login()
    pages.update({f"signed-in {path}": get_page(client, path) for path in SIGNED_IN_PAGES})
    for name, html in pages.items():
        for pattern in (INLINE_SCRIPT, EVENT_HANDLER, STYLE_ATTRIBUTE, STYLE_BLOCK):
            assert not pattern.search(html), f"{name}: {pattern.search(html).group(0)}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_post_form_carries_a_csrf_token(client, make_user, auth):
    pages = {path: get_page(client, path) for path in PUBLIC_PAGES}
    make_user(admin=True)
    auth.login()
    pages.update({f"signed-in {path}": get_page(client, path) for path in SIGNED_IN_PAGES})
    for name, html in pages.items():
        forms = post_forms(html)
        assert forms, f"{name} has no POST form (the theme switch is on every page)"
        for form in forms:
            if form["action"] == "/theme":
                continue  # exempt by design: see test_theme_switch_needs_no_session
            assert "csrf_token" in form["inputs"], f"{name}: POST form without csrf_token"


def test_theme_switch_needs_no_session(client):
    """Anonymous pages carry no CSRF token, so visiting them never creates a session."""
    html = get_page(client, "/docs")
    [theme_form] = [form for form in post_forms(html) if form["action"] == "/theme"]
    assert "csrf_token" not in theme_form["inputs"]
    response = client.post("/theme", data={"theme": "light", "next": "/docs"})
    assert response.status_code == 302


@pytest.mark.parametrize("layout", LAYOUTS)
def test_anonymous_navigation_offers_sign_in_and_sign_up(client):
    html = get_page(client, "/docs")
    assert 'href="/auth/login"' in html
    assert 'href="/auth/register"' in html
    assert 'action="/auth/logout"' not in html


@pytest.mark.parametrize("app_env", [{"AUTH_PASSWORD_ENABLED": "0"}])
def test_sign_up_link_is_hidden_when_password_sign_in_is_off(client):
    html = get_page(client, "/auth/login")
    assert 'href="/auth/register"' not in html
    assert "Password sign-in is turned off" in html


@pytest.mark.parametrize("layout", LAYOUTS)
def test_signed_in_navigation_shows_the_name_and_a_sign_out_form(make_user, auth):
    make_user(name="Grace Hopper")
    auth.login()
    html = get_page(auth.client, "/dashboard")
    assert "Grace Hopper" in html
    assert any(
        "csrf_token" in form["inputs"] for form in post_forms(html)
    ), "no POST form for sign-out"
    assert re.search(r'<form method="post" action="/auth/logout"', html)
    assert 'href="/auth/login"' not in html
    # Members do not see the Admin entry; Profile and Settings sit in the account menu.
    assert 'href="/admin/"' not in html
    assert 'href="/settings/"' in html


def test_admins_see_the_admin_entry(signed_in):
    assert 'href="/admin/"' in get_page(signed_in, "/dashboard")


def test_display_names_are_escaped(make_user, auth):
    make_user(name="<b>Eve</b>")
    auth.login()
    html = get_page(auth.client, "/profile")
    assert "<b>Eve</b>" not in html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html


@pytest.mark.parametrize(
    ("layout", "has_sidebar", "has_topnav_links"),
    [("topnav", False, True), ("sidebar", True, False), ("both", True, False)],
)
def test_layout_decides_where_navigation_lives(client, has_sidebar, has_topnav_links):
    html = get_page(client, "/docs")
    assert ('id="app-sidebar"' in html) is has_sidebar
    assert ('id="topnav-menu"' in html) is has_topnav_links
    assert 'class="app-topbar' in html


@pytest.mark.parametrize("layout", LAYOUTS)
def test_current_page_is_marked_in_the_navigation(client):
    html = get_page(client, "/docs")
    assert re.search(r'<a class="nav-link[^"]* active" href="/docs" aria-current="page">', html)


def test_sign_out_flashes_a_message(signed_in):
    token = CSRF_INPUT.search(get_page(signed_in, "/dashboard")).group(1)
    response = signed_in.post("/auth/logout", data={"csrf_token": token}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert 'class="alert alert-info alert-dismissible fade show"' in html
    assert "You are signed out." in html


def test_login_form_shows_field_errors(client, auth):
    response = client.post(
        "/auth/login",
        data={"csrf_token": auth.csrf_token(), "email": "not-an-email", "password": "x"},
    )
    html = response.get_data(as_text=True)
    assert 'class="form-control is-invalid"' in html
    assert 'class="invalid-feedback"' in html


def test_admin_page_lists_users_with_role_and_status(make_user, auth):
    make_user(admin=True)
    make_user(email="linus@example.com", name="Linus", disabled=True)
    auth.login()
    html = get_page(auth.client, "/admin/")
    assert "Linus" in html and "Disabled" in html and "never" in html
    assert ">Admin</span>" in html


@pytest.mark.parametrize("app_env", [{"WELCOME_ENABLED": "0"}])
def test_settings_say_when_the_welcome_page_is_off_for_everyone(signed_in):
    html = get_page(signed_in, "/settings/")
    assert "has no effect" in html
    assert "Linked accounts" in html and "Active sessions" in html
    assert "coming soon" not in html.lower()


def test_live_page_renders_its_empty_stream(signed_in):
    html = get_page(signed_in, "/live")
    assert 'id="conn-state"' in html and "Connecting…" in html
    assert 'id="transport"' in html
    assert 'id="event-list"' in html and "No events yet" in html
    for topic in ("market.ticks", "system.metrics", "notices"):
        assert f'name="topics" value="{topic}"' in html


def test_a_new_users_dashboard_is_seeded_with_the_starter_widgets(signed_in):
    html = get_page(signed_in, "/dashboard")
    for kind in ("table", "chart", "number", "log"):
        assert f"widget-kind-{kind}" in html
    assert "Markets and host" in html
    # Seeded once: a second visit does not add a second starter dashboard.
    get_page(signed_in, "/dashboard")
    listing = get_page(signed_in, "/dashboards/")
    assert listing.count(">Markets and host</a>") == 1


@pytest.mark.parametrize("app_env", [{"BRAND_PRIMARY_COLOR": "#ff5500"}])
def test_brand_colour_replaces_bootstraps_primary(client):
    css = client.get("/brand.css").get_data(as_text=True)
    assert "--bs-primary: #ff5500;" in css
    assert "--bs-primary-rgb: 255, 85, 0;" in css
    assert re.search(r"\.btn-primary \{[^}]*--bs-btn-bg: #ff5500;", css)
    assert "[data-bs-theme=dark]" in css
