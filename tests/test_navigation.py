"""The navigation: the product's pages in the main menu, the example pages apart under
"Examples", in every layout, and DEMO_PAGES still deciding which pages exist."""

from __future__ import annotations

import re

import pytest

LAYOUTS = ("topnav", "sidebar", "both")
EXAMPLES_TOGGLE = re.compile(r"<button[^>]*>\s*<i[^>]*></i><span>Examples</span>")


@pytest.fixture
def layout():
    return "both"


@pytest.fixture
def app_env():
    return {}


@pytest.fixture
def app(make_app, layout, app_env):
    return make_app(UI_LAYOUT=layout, **app_env)


def main_menu(html: str) -> str:
    """The main menu's items (topnav bar or sidebar), up to the Examples entry."""
    start = re.search(r'<ul class="(?:navbar-nav topnav-links|nav flex-column)"', html).start()
    examples = EXAMPLES_TOGGLE.search(html, start)
    return html[start : examples.start() if examples else html.index("</ul>", start)]


def examples_group(html: str) -> str:
    start = EXAMPLES_TOGGLE.search(html).start()
    return html[start : html.index("</ul>", start)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_example_pages_sit_under_examples_not_in_the_main_menu(client):
    html = client.get("/docs").get_data(as_text=True)
    assert 'href="/docs"' in main_menu(html)
    for path in ("/pricing", "/design-system"):
        assert f'href="{path}"' not in main_menu(html)
        assert f'href="{path}"' in examples_group(html)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_open_example_page_is_marked_in_its_group(client):
    group = examples_group(client.get("/pricing").get_data(as_text=True))
    assert re.search(r'class="[^"]*active" href="/pricing" aria-current="page"', group)


@pytest.mark.parametrize("layout", ["sidebar"])
def test_the_sidebar_group_is_open_on_an_example_page_and_closed_elsewhere(client):
    assert 'aria-expanded="true"' in examples_group(client.get("/pricing").get_data(as_text=True))
    assert 'aria-expanded="false"' in examples_group(client.get("/docs").get_data(as_text=True))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("app_env", [{"DEMO_PAGES": "docs,dashboard"}])
def test_without_example_pages_there_is_no_examples_entry(client):
    html = client.get("/docs").get_data(as_text=True)
    assert not EXAMPLES_TOGGLE.search(html)
    assert client.get("/pricing").status_code == 404
    assert client.get("/design-system").status_code == 404


@pytest.mark.parametrize("app_env", [{"DEMO_PAGES": "docs,pricing"}])
def test_examples_hold_only_the_example_pages_switched_on(client):
    group = examples_group(client.get("/docs").get_data(as_text=True))
    assert 'href="/pricing"' in group
    assert 'href="/design-system"' not in group
    assert client.get("/design-system").status_code == 404


@pytest.mark.parametrize("layout", ["topnav"])
def test_the_top_nav_has_a_more_menu_with_every_item(client):
    html = client.get("/docs").get_data(as_text=True)
    more = html[html.index('class="nav-item dropdown topnav-more"') :]
    for key in ("docs", "examples"):
        assert f'data-nav-key="{key}"' in main_menu(html)
        assert f'data-nav-key="{key}" hidden' in more
