"""No page presents an invented figure as real.

The landing page once showed made-up traffic (1,284 events/s, 312 subscribers);
a figure a visitor reads must come from the event stream, and the Design
system's sample stat cards say that they are samples.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

# A quantity as a page would state one: a unit or rate, a percentage, a
# thousands separator or decimals.  Step numbers and the copyright year are not.
FIGURE = re.compile(
    r"\d[\d,.]*\s*(?:%|ms\b|/s\b|ev/s|events?\b|subscribers?\b|users?\b)"
    r"|\d{1,3}(?:,\d{3})+|\d+\.\d+"
)
OLD_LANDING_FIGURES = ("1,284", "312", "38 ms", "182.40")


class VisibleText(HTMLParser):
    """The text a visitor reads (no scripts or styles), whole and per element class."""

    def __init__(self, watched_class: str = ""):
        super().__init__()
        self.parts: list[str] = []
        self.watched_class = watched_class
        self.watched: list[list[str]] = []
        self._depth_in_watched = 0
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "template"):
            self._hidden += 1
        if self._depth_in_watched:
            self._depth_in_watched += 1
        elif self.watched_class in (dict(attrs).get("class") or "").split():
            self._depth_in_watched = 1
            self.watched.append([])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template"):
            self._hidden -= 1
        if self._depth_in_watched:
            self._depth_in_watched -= 1

    def handle_data(self, data):
        if self._hidden:
            return
        self.parts.append(data)
        if self._depth_in_watched:
            self.watched[-1].append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return parser.text


def landing(client):
    response = client.get("/", follow_redirects=True)
    assert response.status_code == 200
    return response.request.path, visible_text(response.get_data(as_text=True))


def assert_no_invented_figure(path: str, text: str) -> None:
    for old in OLD_LANDING_FIGURES:
        assert old not in text, f"{path} shows {old!r}"
    assert FIGURE.findall(text) == [], f"{path} states figures that no event gave"


def test_the_landing_page_shows_no_invented_figure_to_a_visitor(client):
    path, text = landing(client)
    assert path == "/"
    assert_no_invented_figure(path, text)


@pytest.mark.parametrize(
    "welcome, lands_on", [(True, "/welcome"), (False, "/dashboard")], ids=["welcome", "dashboard"]
)
def test_the_landing_page_shows_no_invented_figure_when_signed_in(
    make_user, auth, welcome, lands_on
):
    # The dashboard's values arrive from the event log and the stream, in the
    # browser; the page as served holds none of its own.
    make_user(welcome_enabled=welcome)
    auth.login()
    path, text = landing(auth.client)
    assert path == lands_on
    assert_no_invented_figure(path, text)


def test_the_design_systems_stat_cards_say_their_figures_are_samples(client):
    parser = VisibleText(watched_class="stat-card")
    parser.feed(client.get("/design-system").get_data(as_text=True))
    cards = [" ".join(" ".join(parts).split()) for parts in parser.watched]
    assert cards, "the Design system shows no stat card"
    for card in cards:
        if FIGURE.search(card):
            assert "sample" in card.lower(), f"a stat card passes a figure as real: {card}"
