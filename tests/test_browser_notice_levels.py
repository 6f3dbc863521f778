"""A notice's level has one name: the same in its toast as in the notices list."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from pulseboard.stream.notice_levels import NOTICE_LEVELS

from .every_page import DEFAULT_LAYOUT, layout_sites, visitor_context

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with layout_sites(tmp_path_factory.mktemp("site"), layouts=(DEFAULT_LAYOUT,)) as site:
        yield site


def test_each_level_is_named_alike_in_the_toast_and_in_the_notices_list(browser, site):
    url = site.urls[DEFAULT_LAYOUT]
    context = visitor_context(browser, "member", url)
    page = context.new_page()
    page.goto(f"{url}/notices")
    page.wait_for_function("() => window.Pulseboard.stream.subscribed.includes('notices')")
    toasts = {}
    for level in NOTICE_LEVELS:
        site.send_notice(url, f"A notice at level {level}", level=level)
        toast = page.locator("#notice-toasts .toast", has_text=f"A notice at level {level}")
        toasts[level] = toast.locator(".notice-level").inner_text()
    page.reload()
    for level in NOTICE_LEVELS:
        item = page.locator("#notices-page-list li", has_text=f"A notice at level {level}")
        expect(item.locator(".notice-level")).to_have_text(toasts[level])
    assert toasts == {level: shown["label"] for level, shown in NOTICE_LEVELS.items()}
    assert toasts["danger"] == "Alert"
    context.close()
