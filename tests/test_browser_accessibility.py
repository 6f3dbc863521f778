"""No page has an accessibility fault that axe-core finds: every page of the URL map,
signed out, as a member and as an admin, light and dark, in every UI layout.

Each page is checked against every rule in light mode, then in dark mode against the
rules a colour mode can change (contrast, links told apart by colour)."""

from __future__ import annotations

import pytest

from .accessibility import COLOUR_RULES, add_axe, axe_violations, describe
from .every_page import (
    DEFAULT_LAYOUT,
    LAYOUTS,
    VISITORS_BY_LAYOUT,
    Visits,
    layout_sites,
    show_live_data,
    visitor_context,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with layout_sites(tmp_path_factory.mktemp("site")) as site:
        yield site


def set_theme(page, theme: str) -> None:
    """The colour mode a visitor on "auto" gets from their system (static/js/theme.js)."""
    page.emulate_media(color_scheme=theme)
    page.wait_for_function("theme => document.documentElement.dataset.bsTheme === theme", arg=theme)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_page_has_an_accessibility_violation(browser, site, layout):
    url, visits, problems = site.urls[layout], Visits(site.pages), []
    for visitor in VISITORS_BY_LAYOUT[layout]:
        context = visitor_context(browser, visitor, url, color_scheme="light")
        add_axe(context)
        page = context.new_page()
        for path in visits.of(page, url):
            # Every account starts on "auto", so the system's colour scheme decides.
            assert page.locator("html").get_attribute("data-theme-pref") == "auto", path
            if layout == DEFAULT_LAYOUT:
                show_live_data(page, site, url)
            for theme, rules in (("light", None), ("dark", COLOUR_RULES)):
                set_theme(page, theme)
                where = f"{layout} layout, {visitor}, {theme}, {path}"
                problems += describe(axe_violations(page, rules), where)
        context.close()
    visits.assert_every_page_opened()
    assert not problems, "axe-core found:\n" + "\n".join(problems)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_dashboard_whose_stream_is_down_keeps_its_contrast(browser, site, theme):
    """Widgets of a page that lost its stream are shown stale; stale must not mean
    faded below the contrast their text needs (it did: opacity 0.55)."""
    url = site.urls[DEFAULT_LAYOUT]
    context = visitor_context(browser, "member", url, color_scheme=theme)
    add_axe(context)
    page = context.new_page()
    page.goto(f"{url}/dashboard")
    page.wait_for_function("() => window.Pulseboard.stream.state === 'connected'")
    page.locator(".widget:not(.widget-stale)").first.wait_for()
    page.evaluate("() => window.Pulseboard.stream.socket.disconnect()")  # as a dropped stream
    page.locator(".widget-stale").first.wait_for()
    problems = describe(axe_violations(page, COLOUR_RULES), f"stale /dashboard, {theme}")
    context.close()
    assert not problems, "axe-core found:\n" + "\n".join(problems)
