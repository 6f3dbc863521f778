"""Chromium for tests: Debian's build driven by Playwright, with every CSP or script error kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
