"""The pages in a real Chromium, served by gunicorn's gevent worker as in production."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .browser import PageProblems
from .conftest import PASSWORD
from .streaming import embedded_site

pytestmark = pytest.mark.browser

ANONYMOUS_PAGES = ["/", "/docs", "/pricing", "/design-system", "/auth/login", "/auth/register"]
MEMBER_PAGES = ["/welcome", "/dashboard", "/live", "/profile", "/settings/", "/admin/"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("site")) as site:
        yield site["url"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, site):
    page.goto(f"{site}/auth/login")
    page.fill("input[name=email]", "ada@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action^='/auth/login'] button[type=submit]")
    page.wait_for_load_state()


def choose_theme_in_settings(page, value: str) -> None:
    """Click the visible label, as a person would (the radio itself is styled away)."""
    radio_id = page.locator(f"input[name=theme][value={value}]").get_attribute("id")
    page.click(f"label[for={radio_id}]")
    expect(page.locator(f"input[name=theme][value={value}]")).to_be_checked()


def save_preferences(page) -> None:
    """Submit the preferences and wait until the page they lead to has loaded: a
    context closed while the POST or the settings page its redirect asks for is
    still loading can hang in ``BrowserContext.close()``."""
    with page.expect_response(
        lambda response: response.url.endswith("/settings/preferences")
        and response.request.method == "POST"
    ) as answer:
        page.locator("form[action='/settings/preferences'] button[type=submit]").click()
    assert answer.value.status in (302, 303), answer.value.status
    expect(page.get_by_text("Preferences saved.")).to_be_visible()
    page.wait_for_load_state()


def test_every_page_loads_without_csp_violations_or_script_errors(page, site):
    problems = PageProblems(page)
    for path in ANONYMOUS_PAGES:
        assert page.goto(f"{site}{path}").status == 200, path
    sign_in(page, site)
    for path in MEMBER_PAGES:
        assert page.goto(f"{site}{path}").status == 200, path
        expect(page.locator("main, [role=main]").first).to_be_visible()
    assert problems.messages == []


def test_the_theme_switch_changes_and_remembers_the_colour_mode(page, site):
    page.goto(f"{site}/docs")
    page.locator(".theme-switch button[data-bs-toggle=dropdown]").first.click()
    page.locator(".theme-switch button[name=theme][value=dark]").first.click()
    page.wait_for_load_state()
    assert page.url.endswith("/docs")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")


def test_a_signed_in_users_theme_follows_them_to_another_browser(browser, site):
    first = browser.new_context()
    page = first.new_page()
    sign_in(page, site)
    page.goto(f"{site}/settings/")
    choose_theme_in_settings(page, "dark")
    save_preferences(page)
    first.close()

    second = browser.new_context()
    page = second.new_page()
    sign_in(page, site)
    page.goto(f"{site}/dashboard")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    # Put it back for the other tests of this module.
    page.goto(f"{site}/settings/")
    choose_theme_in_settings(page, "auto")
    save_preferences(page)
    second.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_auto_theme_follows_the_system_preference(browser, site, scheme):
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{site}/pricing")
    expect(page.locator("html")).to_have_attribute("data-theme-pref", "auto")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", scheme)
    context.close()


def test_the_404_page_is_styled_in_the_browser(page, site):
    response = page.goto(f"{site}/no/such/page")
    assert response.status == 404
    expect(page.get_by_text("Page not found").first).to_be_visible()
    expect(page.locator("link[href*='bootstrap.min.css']")).to_have_count(1)
