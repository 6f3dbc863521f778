"""The README's first start, as a newcomer meets it.

A copy of the project as a fresh clone has it (no ``.venv``, ``.env`` or
``instance/``) runs ``make dev``: it builds its own virtualenv, writes its own
``.env`` and serves the app with the demo producer beside it.  In Chromium a
newcomer opens ``/``, signs up, confirms the address with the link the dev log
prints, and sees live values on the dashboard; an event published from another
shell reaches the page.  The start logs no warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from .browser import PageProblems, launch
from .conftest import PASSWORD
from .servers import PROJECT_ROOT, free_port

pytestmark = pytest.mark.browser

INSTALL_TIMEOUT = 600  # a virtualenv from PyPI; seconds with pip's cache
VERIFY_LINK = re.compile(r"https?://\S+/auth/verify/\S+")
# pip's note on an index or find-links location that its configuration on the
# machine names and that does not exist: the machine's pip set-up, not the project.
PIP_ABSENT_LOCATION = re.compile(r"^WARNING: Location '.+' is ignored: it is neither a file nor")


def fresh_copy(target: Path) -> Path:
    """The project's files as a fresh clone of this tree would hold them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


class MakeDev:
    """``make dev`` in its own session; its output kept in a file."""

    def __init__(self, project: Path, port: int):
        self.project, self.port = project, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = project / "make-dev.log"
        self.log = self.log_path.open("w")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", tempfile.gettempdir()),
            "LANG": "C.UTF-8",
        }
        self.process = subprocess.Popen(
            ["make", "dev", f"PORT={port}"],
            cwd=project, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + INSTALL_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make dev exited {self.process.returncode}:\n{self.output()[-4000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        pytest.fail(f"make dev did not serve within {INSTALL_TIMEOUT} s:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        """Ctrl-C, as a person stops it: the server and the demo producer both end."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def make_dev(tmp_path_factory):
    project = fresh_copy(tmp_path_factory.mktemp("fresh") / "pulseboard")
    dev = MakeDev(project, free_port())
    try:
        dev.wait_until_serving()
        yield dev
    finally:
        dev.stop()


def publish_from_another_shell(dev: MakeDev, payload: dict, key: str) -> str:
    result = subprocess.run(
        [str(dev.project / ".venv/bin/pulseboard"), "events", "publish",
         "--topic", "market.ticks", "--type", "tick", "--key", key,
         "--payload", json.dumps(payload)],
        cwd=dev.project, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(dev.project)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sign_up_and_see_live_values_within_ten_seconds(make_dev):
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        problems = PageProblems(page)

        page.goto(make_dev.url)
        page.get_by_role("link", name="Create free account").click()
        page.fill("input[name=display_name]", "Ada Newcomer")
        page.fill("input[name=email]", "ada@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=confirm]", PASSWORD)
        page.check("input[name=accept]")
        page.click("form[action='/auth/register'] button[type=submit]")
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

        # The link as the dev log prints it, copied whole from one line.
        deadline = time.monotonic() + 10
        while not (links := VERIFY_LINK.findall(make_dev.output())):
            assert time.monotonic() < deadline, "no verification link in the dev log"
            time.sleep(0.2)
        page.goto(links[-1])
        expect(page.get_by_text("Your email address is confirmed")).to_be_visible()
        page.fill("input[name=email]", "ada@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action^='/auth/login'] button[type=submit]")

        page.goto(f"{make_dev.url}/dashboard")
        opened = time.monotonic()
        prices = page.locator("section.widget-kind-table tr .widget-cell-value")
        expect(prices.first).not_to_be_empty(timeout=10_000)
        print(f"first live value {time.monotonic() - opened:.1f} s after the page opened")

        event_id = publish_from_another_shell(
            make_dev, {"symbol": "NEWCO", "price": 123.45, "change_pct": 0.5}, key="NEWCO"
        )
        assert re.fullmatch(r"[0-9a-f]{32}", event_id)
        row = page.locator("section.widget-kind-table tr[data-key=NEWCO]")
        price = row.locator(".widget-cell-value")
        expect(price).to_have_text(re.compile(r"123\.45"), timeout=10_000)
        assert problems.messages == []
        browser.close()


def test_the_start_logs_no_warning(make_dev):
    # The whole output, from the virtualenv through `db upgrade` to the server's
    # start: a warning in any step is one a newcomer sees.
    output = make_dev.output()
    assert "Listening at" in output
    warnings = [
        line
        for line in output.splitlines()
        if re.search(r"warn|error|traceback", line, re.I) and not PIP_ABSENT_LOCATION.search(line)
    ]
    assert warnings == [], "\n".join(warnings)
