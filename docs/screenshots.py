"""Screenshots of the dashboard editor and a built dashboard, light and dark.

Run against a server with the demo producer feeding it (``make dev``), signed
in as an existing user whose theme follows the system (the default):

    .venv/bin/python docs/screenshots.py --url http://127.0.0.1:8000 \\
        --email you@example.com --password-stdin < password.txt

It builds a "Trading desk" dashboard through the editor (once), waits for the
widgets to fill, and writes docs/img/{dashboard,editor}-{light,dark}.png.
Chromium: Debian's, through Playwright (CHROMIUM_PATH to use another).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent / "img"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
NAME = "Trading desk"
WIDGETS = [
    {"kind": "number", "title": "ACME", "topic": "market.ticks", "path": "price",
     "unit": "USD", "keys": "ACME"},
    {"kind": "number", "title": "Ticks", "topic": "market.ticks", "mode": "rate", "window": "60"},
    {"kind": "number", "title": "CPU peak", "topic": "system.metrics", "path": "cpu_pct",
     "unit": "%", "mode": "max", "window": "300"},
    {"kind": "number", "title": "Memory", "topic": "system.metrics", "path": "mem_pct",
     "unit": "%"},
    {"kind": "chart", "title": "ACME price", "topic": "market.ticks", "path": "price",
     "unit": "USD", "keys": "ACME", "range": "900"},
    {"kind": "chart", "title": "CPU", "topic": "system.metrics", "path": "cpu_pct", "unit": "%",
     "range": "900"},
    {"kind": "table", "title": "Prices", "topic": "market.ticks", "path": "price", "unit": "USD"},
    {"kind": "log", "title": "Notices", "topic": "notices", "path": "title"},
]  # fmt: skip


def build(page, url: str) -> str:
    page.goto(f"{url}/dashboards/")
    existing = page.get_by_role("link", name=NAME, exact=True)
    if existing.count():
        existing.first.click()
        return page.url
    page.fill("#new-name", NAME)
    page.click("form[action='/dashboards/'] button[type=submit]")
    for widget in WIDGETS:
        page.select_option("#kind", widget["kind"])
        for name in ("title", "topic", "path", "unit", "keys"):
            page.fill(f"#{name}", widget.get(name, ""))
        for name in ("mode", "window", "range"):
            if name in widget:
                page.select_option(f"#{name}", widget[name])
        page.click("#widget-form button[type=submit]")
        page.wait_for_load_state()
    return page.url.removesuffix("/edit")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password-stdin", action="store_true", required=True)
    options = parser.parse_args()
    password = sys.stdin.readline().rstrip("\n")
    OUT.mkdir(exist_ok=True)
    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1366, "height": 900}, color_scheme=scheme, device_scale_factor=1
            )
            page = context.new_page()
            page.goto(f"{options.url}/auth/login")
            page.fill("input[name=email]", options.email)
            page.fill("input[name=password]", password)
            page.click("form[action^='/auth/login'] button[type=submit]")
            page.wait_for_load_state()
            view = build(page, options.url)
            page.goto(f"{view}/edit")
            page.screenshot(path=OUT / f"editor-{scheme}.png", full_page=True)
            page.goto(view)
            page.wait_for_selector("section.widget .widget-status:text('Live')")
            time.sleep(5)  # a few live updates on top of the history
            page.screenshot(path=OUT / f"dashboard-{scheme}.png", full_page=True)
            context.close()
        browser.close()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
