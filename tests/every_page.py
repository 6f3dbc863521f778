"""Every page of the site, for browser tests that look at all of them.

The pages come from the app's URL map, so a new page is visited without anyone
adding it here.  A GET rule is a page unless NOT_PAGES (or NOT_PAGE_BLUEPRINTS)
says why not.  A page with URL arguments (a dashboard's id) is reached by the
links of the pages visited before it, or has its arguments made in
PAGE_ARGUMENTS (a password-reset token).  A page no visitor could open, or an
entry here whose rule is gone, fails the test with a message that says so.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import Flask, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter, Rule

from pulseboard import create_app
from pulseboard.api.tokens import issue_token
from pulseboard.auth.links import RESET, make_link_token
from pulseboard.events.demo import HostMetrics
from pulseboard.extensions import db
from pulseboard.models import User
from pulseboard.stream.notice_levels import NOTICE_LEVELS

from .browser import sign_in
from .servers import base_env, gunicorn, run_cli
from .streaming import create_users, ingest, send_admin_notice, signed_in_session

DEFAULT_LAYOUT = "both"
LAYOUTS = (DEFAULT_LAYOUT, "topnav", "sidebar")  # UI_LAYOUT
ADMIN = "ada@example.com"
MEMBER = "bob@example.com"
VISITORS = {"signed out": None, "member": MEMBER, "admin": ADMIN}
# The default layout is seen by every visitor, pages filled with live data.  The
# others change only the frame around the same content, so the widest frames are
# enough there: signed out, and an admin's (a member's lacks only the admin items).
VISITORS_BY_LAYOUT = {
    DEFAULT_LAYOUT: ("signed out", "member", "admin"),
    "topnav": ("signed out", "admin"),
    "sidebar": ("signed out", "admin"),
}
MISSING_PAGE = "/no/such/page"  # the styled 404

NOT_PAGES = {
    "static": "static files",
    "main.brand_css": "a stylesheet",
    "main.healthz": "a health probe for load balancers",
    "main.readyz": "a readiness probe (JSON)",
    "metrics.scrape": "Prometheus metrics (text)",
    "auth.oauth_start": "a redirect to the OAuth provider",
    "auth.oauth_callback": "the OAuth provider's return: signs in and redirects",
    "auth.verify_email": "an emailed link that confirms the address and redirects",
    "settings.confirm_email": "an emailed link that changes the address and redirects",
}
NOT_PAGE_BLUEPRINTS = {"api": "the HTTP API and its event stream, for scripts"}


def reset_password_arguments(member: User) -> dict[str, str]:
    return {"token": make_link_token(member, RESET)}


# endpoint → its URL arguments, given the member's account (no page links there)
PAGE_ARGUMENTS: dict[str, Callable[[User], dict[str, str]]] = {
    "auth.reset_password": reset_password_arguments,
}


def not_a_page(rule: Rule) -> str | None:
    """Why ``rule`` is not a page; None when it is one."""
    if "GET" not in rule.methods:
        return "only a form's target (no GET)"
    blueprint = rule.endpoint.partition(".")[0] if "." in rule.endpoint else None
    return NOT_PAGES.get(rule.endpoint) or NOT_PAGE_BLUEPRINTS.get(blueprint)


@dataclass
class SitePages:
    """The pages of an app: paths to open, and the rules whose arguments only links give."""

    paths: list[str]
    linked: dict[str, str]  # endpoint → rule, for pages reached through links
    adapter: MapAdapter

    def linked_endpoint(self, path: str) -> str | None:
        """The endpoint of ``path`` when it is one of the pages reached through links."""
        try:
            endpoint, _ = self.adapter.match(urlsplit(path).path, method="GET")
        except HTTPException:  # not found, a redirect to add a slash, POST only...
            return None
        return endpoint if endpoint in self.linked else None


def site_pages(app: Flask) -> SitePages:
    """Every page in ``app``'s URL map, the 404 page first."""
    rules = list(app.url_map.iter_rules())
    endpoints = {rule.endpoint for rule in rules}
    blueprints = {endpoint.partition(".")[0] for endpoint in endpoints}
    stale = sorted(
        [name for name in [*NOT_PAGES, *PAGE_ARGUMENTS] if name not in endpoints]
        + [name for name in NOT_PAGE_BLUEPRINTS if name not in blueprints]
    )
    assert not stale, f"tests/every_page.py names what the app no longer has: {stale}"

    paths, linked = [MISSING_PAGE], {}
    with app.test_request_context():
        member = db.session.scalar(select(User).where(User.email == MEMBER))
        for rule in sorted(rules, key=lambda rule: rule.rule):
            if not_a_page(rule):
                continue
            if not rule.arguments:
                paths.append(url_for(rule.endpoint))
            elif rule.endpoint in PAGE_ARGUMENTS:
                paths.append(url_for(rule.endpoint, **PAGE_ARGUMENTS[rule.endpoint](member)))
            else:
                linked[rule.endpoint] = rule.rule
    return SitePages(paths, linked, app.url_map.bind("localhost"))


@dataclass
class Site:
    """One database served in every layout: layout → URL."""

    urls: dict[str, str]
    pages: SitePages
    token: str  # an ingest token for every topic
    admin: requests.Session | None = None  # signed in, for sending notices

    def send_notice(self, url: str, title: str, level: str) -> None:
        if self.admin is None:
            self.admin = signed_in_session(url, ADMIN)
        send_admin_notice(self.admin, url, level=level, title=title, body="", target="all")


@contextlib.contextmanager
def layout_sites(tmp: Path, layouts: tuple[str, ...] = LAYOUTS) -> Iterator[Site]:
    """A migrated SQLite site with an admin (ADMIN) and a member (MEMBER), served by one
    gunicorn per UI layout; all share the database, so a session works on each."""
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp / 'site.db'}",
        TMPDIR=str(tmp),
        SECRET_KEY="every-page-tests",  # the links made here must verify on the servers
        CONSUMER_BATCH_WAIT_MS="5",
        AUTH_RATE_LIMIT="1000/minute",  # one address signs in many times
    )
    migrated = run_cli("db", "upgrade", env=env)
    assert migrated.returncode == 0, migrated.stderr
    create_users(env)
    app = create_app(env)
    with app.app_context():
        pages = site_pages(app)
        _, token = issue_token(db.session, "every page", ["*"])
        db.session.remove()
        db.engine.dispose()
    with contextlib.ExitStack() as stack:
        urls = {
            layout: stack.enter_context(gunicorn({**env, "UI_LAYOUT": layout}))
            for layout in layouts
        }
        site = Site(urls, pages, token)
        yield site
        if site.admin is not None:
            site.admin.close()


def visitor_context(browser, visitor: str, url: str, **options):
    """A browser context signed in as ``visitor`` (one of VISITORS) on the site at ``url``."""
    context = browser.new_context(reduced_motion="reduce", **options)
    if VISITORS[visitor] is not None:
        page = context.new_page()
        sign_in(page, url, VISITORS[visitor])
        page.close()
    return context


class Visits:
    """The pages the visitors of one test opened; every page must be someone's."""

    def __init__(self, pages: SitePages):
        self.pages = pages
        self.opened: set[str] = set()  # paths, and the endpoints of linked pages

    def of(self, page, url: str) -> Iterator[str]:
        """Open each of one visitor's pages in turn and yield its path once it is open:
        the URL map's pages, then those their links lead to (one of each endpoint)."""
        queue, followed = list(self.pages.paths), set()
        for path in queue:  # grows as links are found
            if not open_page(page, url, path):
                continue
            for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
                if not href.startswith(f"{url}/"):
                    continue
                endpoint = self.pages.linked_endpoint(href.removeprefix(url))
                if endpoint is not None and endpoint not in followed:
                    followed.add(endpoint)
                    queue.append(urlsplit(href).path)
            self.opened.add(self.pages.linked_endpoint(path) or path)
            yield path

    def assert_every_page_opened(self) -> None:
        missing = sorted(set(self.pages.paths) - self.opened)
        assert not missing, (
            f"no visitor could open {missing}: each redirected or was refused for everyone; "
            "if one is not a page, say why in NOT_PAGES (tests/every_page.py)"
        )
        unlinked = {e: rule for e, rule in self.pages.linked.items() if e not in self.opened}
        assert not unlinked, (
            f"no page links to {unlinked}: make their URL arguments in PAGE_ARGUMENTS, "
            "or say why they are not pages in NOT_PAGES (tests/every_page.py)"
        )


def open_page(page, url: str, path: str) -> bool:
    """Go to ``path``: True when it is the visitor's page, False when the site sends
    them elsewhere (sign-in first, signed in already) or refuses (admins only)."""
    response = page.goto(f"{url}{path}")
    if path == MISSING_PAGE:
        assert response.status == 404, f"{path} answered {response.status}"
        return True
    if urlsplit(page.url).path != urlsplit(path).path or response.status in (403, 404):
        return False
    assert response.status == 200, f"{path} answered {response.status}"
    return True


_notice_numbers = itertools.count(1)
_levels = list(NOTICE_LEVELS)  # each level in turn, so every kind of toast is seen


def show_live_data(page, site: Site, url: str) -> None:
    """Signed-in pages as their users see them: a price up, a price down, this host's
    metrics, and a notice as a toast.  The notice goes last, through the admin page,
    and is waited for: events reach a page in order, so when it shows, the rest has."""
    if not page.evaluate("() => Boolean(window.Pulseboard && window.Pulseboard.stream)"):
        return
    subscribed = "() => window.Pulseboard.stream.subscribed"
    page.wait_for_function(f"() => ({subscribed})().includes('notices')")
    while True:
        # A page subscribes in steps: send again if it held more topics by the end.
        before = sorted(page.evaluate(subscribed))
        ingest(url, site.token, sample_events())
        number = next(_notice_numbers)
        title = f"Maintenance window {number}"
        site.send_notice(url, title, level=_levels[number % len(_levels)])
        page.locator("#notice-toasts .toast.show", has_text=title).wait_for()
        if sorted(page.evaluate(subscribed)) == before:
            return


def sample_events() -> list[dict]:
    """What the demo producer sends (pulseboard.events.demo): ticks and a host sample."""

    def tick(symbol: str, price: float, change_pct: float) -> dict:
        payload = {
            "symbol": symbol,
            "price": price,
            "bid": round(price * 0.9995, 2),
            "ask": round(price * 1.0005, 2),
            "change_pct": change_pct,
            "volume": 1200,
        }
        return {"topic": "market.ticks", "type": "tick", "key": symbol, "payload": payload}

    return [
        tick("ACME", 101.25, 1.25),
        tick("GLOBX", 48.5, -3.0),
        {"topic": "system.metrics", "type": "host", "key": "host", "payload": HostMetrics().read()},
    ]
