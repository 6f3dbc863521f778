"""Chromium for tests: Debian's build driven by Playwright, with every CSP or script error kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import PASSWORD

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


# Page scripts: a dropped connection whose automatic retry waits until the test says so.
DROP_CONNECTION = """() => {
  const manager = Pulseboard.stream.socket.io;
  manager.reconnection(false);
  manager.engine.close();
}"""
RECONNECT = """() => {
  Pulseboard.stream.socket.io.reconnection(true);
  Pulseboard.stream.socket.connect();
}"""


def launch(playwright):
    if not CHROMIUM.exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("PULSEBOARD_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by a page."""

    def __init__(self, page):
        self.messages: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))

    def _on_console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.messages.append(f"{message.type}: {message.text}")


def sign_in(page, url: str, email: str = "bob@example.com") -> None:
    """Through the real sign-in form, as a person would."""
    page.goto(f"{url}/auth/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action^='/auth/login'] button[type=submit]")
    page.wait_for_load_state()
    assert "/auth/login" not in page.url, "sign-in failed"


def open_stream_page(page, url: str, path: str, *topics: str, timeout_ms: int = 15_000) -> None:
    """Open a page and wait until the server confirms its subscription to ``topics``."""
    page.goto(f"{url}{path}")
    page.wait_for_function(
        "topics => topics.every(t => (window.Pulseboard.stream.subscribed || []).includes(t))",
        arg=list(topics),
        timeout=timeout_ms,
    )
