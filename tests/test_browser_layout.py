"""Layout in a real Chromium: no page scrolls sideways on a phone, and the top
navigation stays on one line, its overflow in a "More" menu."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .browser import PageProblems
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

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
COLLAPSE_BELOW = 992  # Bootstrap's lg: narrower, the top nav is behind the hamburger

# Elements past the right edge of the viewport and not inside a scroll box, for the
# failure message (a pseudo-element shows as its element).
STICKING_OUT = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = (node) => {
    for (let up = node.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const name = (node) => node.tagName.toLowerCase() + (node.id ? "#" + node.id : "") +
    [...node.classList].map((c) => "." + c).join("");
  return [...document.querySelectorAll("body *")]
    .filter((node) => node.getBoundingClientRect().right > width + 0.5 && !clipped(node))
    .slice(0, 8)
    .map((node) => `${name(node)} (to ${Math.round(node.getBoundingClientRect().right)}px)`);
}"""

# The top nav as the admin sees it: which items sit in the bar, which in "More", and
# whether the bar holds one line.
TOP_NAV = """() => {
  const list = document.getElementById("topnav-links");
  const more = list.querySelector(".topnav-more");
  const shown = [...list.children].filter((item) => !item.hidden);
  const box = (node) => node.getBoundingClientRect();
  const middle = (node) => box(node).top + box(node).height / 2;
  const brand = document.querySelector(".app-topbar .app-brand");
  const actions = document.querySelector(".app-topbar .topbar-actions");
  return {
    all: [...list.children].filter((item) => item !== more).map((item) => item.dataset.navKey),
    inBar: shown.filter((item) => item !== more).map((item) => item.dataset.navKey),
    inMore: more.hidden ? [] : [...new Set([...more.querySelectorAll("[data-nav-key]")]
      .filter((entry) => !entry.hidden).map((entry) => entry.dataset.navKey))],
    tops: [...new Set(shown.map((item) => Math.round(box(item).top)))],
    middles: [brand, list, actions].map((node) => Math.round(middle(node))),
    lastRight: Math.max(...shown.map((item) => box(item).right)),
    listRight: box(list).right,
  };
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with layout_sites(tmp_path_factory.mktemp("site")) as site:
        yield site


def settled(page) -> None:
    """Wait two frames: the resize observers have run and the page is laid out."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_page_scrolls_sideways_on_a_phone(browser, site, layout):
    url, visits, wide = site.urls[layout], Visits(site.pages), []
    for visitor in VISITORS_BY_LAYOUT[layout]:
        context = visitor_context(browser, visitor, url, viewport=PHONE)
        page = context.new_page()
        for path in visits.of(page, url):
            if layout == DEFAULT_LAYOUT:
                show_live_data(page, site, url)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                wide.append(f"{layout}, {visitor}, {path}: {width}px {page.evaluate(STICKING_OUT)}")
        context.close()
    visits.assert_every_page_opened()
    assert not wide, "wider than the phone:\n" + "\n".join(wide)


@pytest.fixture
def admin_page(browser, site):
    """The admin on the docs page, topnav layout, on a laptop screen; whatever the test
    does to it, the page's scripts raise no error."""
    context = visitor_context(browser, "admin", site.urls["topnav"], viewport=LAPTOP)
    page = context.new_page()
    problems = PageProblems(page)
    page.goto(f"{site.urls['topnav']}/docs")
    settled(page)
    yield page
    context.close()
    assert problems.messages == []


def assert_one_line(nav: dict) -> None:
    assert len(nav["tops"]) == 1, f"the items sit on {len(nav['tops'])} lines"
    assert max(nav["middles"]) - min(nav["middles"]) <= 2, "brand, items and actions not in line"
    assert nav["lastRight"] <= nav["listRight"] + 0.5, "the last item runs under the actions"


def test_an_admins_top_nav_stays_on_one_line_at_1366px(admin_page):
    nav = admin_page.evaluate(TOP_NAV)
    assert_one_line(nav)
    assert len(nav["all"]) >= 7, nav  # an admin's: six pages and the examples
    assert nav["inBar"] + nav["inMore"] == nav["all"]


def test_top_nav_items_that_do_not_fit_move_into_more(admin_page):
    narrowest = None
    for width in range(LAPTOP["width"], COLLAPSE_BELOW - 1, -41):
        admin_page.set_viewport_size({"width": width, "height": LAPTOP["height"]})
        settled(admin_page)
        nav = admin_page.evaluate(TOP_NAV)
        assert_one_line(nav)
        # Each item once, in order: the first ones in the bar, the rest in "More".
        assert nav["inBar"] + nav["inMore"] == nav["all"], f"at {width}px: {nav}"
        narrowest = nav
    assert narrowest["inMore"], "at the narrowest width everything still fitted"

    admin_page.get_by_role("button", name="More").click()
    last = admin_page.locator(".topnav-more .dropdown-item").last
    expect(last).to_be_visible()
    target = last.get_attribute("href")
    last.click()
    admin_page.wait_for_url(f"**{target}")


def test_more_gives_its_items_back_when_the_window_widens(admin_page):
    admin_page.set_viewport_size({"width": COLLAPSE_BELOW, "height": LAPTOP["height"]})
    settled(admin_page)
    assert admin_page.evaluate(TOP_NAV)["inMore"]
    admin_page.set_viewport_size({"width": 1920, "height": LAPTOP["height"]})
    settled(admin_page)
    nav = admin_page.evaluate(TOP_NAV)
    assert nav["inBar"] == nav["all"]
    expect(admin_page.locator(".topnav-more")).to_be_hidden()


def test_below_the_breakpoint_every_item_is_in_the_hamburger_menu(admin_page):
    admin_page.set_viewport_size({"width": COLLAPSE_BELOW - 1, "height": LAPTOP["height"]})
    admin_page.get_by_role("button", name="Toggle navigation").click()
    items = admin_page.locator("#topnav-links > li:not(.topnav-more)")
    assert items.count() >= 7
    for item in items.all():
        expect(item).to_be_visible()
    expect(admin_page.locator(".topnav-more")).to_be_hidden()


def test_the_sidebar_keeps_example_pages_in_a_group_that_opens(browser, site):
    context = visitor_context(browser, "signed out", site.urls["sidebar"], viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{site.urls['sidebar']}/docs")
    sidebar = page.locator("#app-sidebar")
    expect(sidebar.get_by_role("link", name="Pricing")).to_be_hidden()
    sidebar.get_by_role("button", name="Examples").click()
    expect(sidebar.get_by_role("link", name="Pricing")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Design system")).to_be_visible()
    context.close()


# The labels a widget's status badge takes (templates/dashboards/view.html and
# static/js/dashboard.js); the longest leaves its title the least room.
WIDGET_STATUSES = ("Loading…", "Live", "Connecting…", "Offline", "No access")

# Each widget title that does not show whole beside a badge reading `label`.
CUT_WIDGET_TITLES = """(label) => {
  document.querySelectorAll(".widget-status").forEach((badge) => { badge.textContent = label; });
  return [...document.querySelectorAll(".widget .card-title")]
    .filter((title) => title.scrollWidth > title.clientWidth)
    .map((title) => title.textContent.trim());
}"""

# Each option of the editor's drop-downs wider than its box shows it.
CUT_OPTIONS = """() => {
  const measure = document.createElement("canvas").getContext("2d");
  return [...document.querySelectorAll("#widget-form select")].flatMap((select) => {
    const style = getComputedStyle(select);
    measure.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const room = select.clientWidth - padding;
    return [...select.options]
      .filter((option) => measure.measureText(option.text).width > room)
      .map((option) => `${select.id}: ${option.text}`);
  });
}"""


def test_the_starter_dashboard_and_its_editor_show_their_text_whole_at_1366px(browser, site):
    url = site.urls[DEFAULT_LAYOUT]
    context = visitor_context(browser, "member", url, viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{url}/dashboard")
    expect(page.locator(".widget .card-title", has_text="Memory in use")).to_be_visible()
    cut = {label: page.evaluate(CUT_WIDGET_TITLES, label) for label in WIDGET_STATUSES}
    assert cut == {label: [] for label in WIDGET_STATUSES}
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.locator("#widget-form")).to_be_visible()
    assert page.evaluate(CUT_OPTIONS) == []
    context.close()
