"""A person signing up in Chromium: register, confirm by the mailed link, sign out and in."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import PageProblems, launch
from .conftest import PASSWORD
from .mailbox import SmtpServer
from .servers import base_env, free_port, gunicorn, run_cli

pytestmark = pytest.mark.browser


@pytest.fixture
def site_with_mail(tmp_path):
    with SmtpServer() as smtp:
        port = free_port()
        env = base_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'site.db'}",
            TMPDIR=str(tmp_path),
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(smtp.port),
            MAIL_USE_TLS="0",
            APP_DOMAIN="127.0.0.1",
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        with gunicorn(env, port=port) as url:
            yield url, smtp.mailbox


def test_register_verify_sign_out_sign_in_and_switch_theme(site_with_mail):
    url, mailbox = site_with_mail
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        problems = PageProblems(page)

        page.goto(f"{url}/auth/register")
        page.fill("input[name=display_name]", "Grace Hopper")
        page.fill("input[name=email]", "grace@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=confirm]", PASSWORD)
        page.check("input[name=accept]")
        page.click("form[action='/auth/register'] button[type=submit]")
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

        link = mailbox.link_in(mailbox.wait_for("grace@example.com", "Confirm your email"))
        parts = urlsplit(link)
        page.goto(f"{url}{parts.path}")
        expect(page.get_by_text("Your email address is confirmed")).to_be_visible()

        page.fill("input[name=email]", "grace@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action^='/auth/login'] button[type=submit]")
        expect(page.get_by_text("Grace Hopper").first).to_be_visible()

        # Sign out from the account menu, then back in.
        page.locator("form[action='/auth/logout'] button[type=submit]").first.dispatch_event(
            "click"
        )
        expect(page.get_by_text("You are signed out.")).to_be_visible()
        page.goto(f"{url}/auth/login")
        page.fill("input[name=email]", "grace@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action^='/auth/login'] button[type=submit]")
        page.goto(f"{url}/dashboard")
        expect(page).to_have_url(f"{url}/dashboard")

        page.locator(".theme-switch button[data-bs-toggle=dropdown]").first.click()
        page.locator(".theme-switch button[name=theme][value=dark]").first.click()
        expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
        assert problems.messages == []
        browser.close()
