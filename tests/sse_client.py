"""A Server-Sent Events client for tests, parsing the stream as EventSource does, and
the read tokens and marker events the SSE tests share."""

from __future__ import annotations

import json
import re

import requests

from .servers import run_cli


def read_token(site, patterns: str) -> tuple[int, str]:
    created = run_cli("tokens", "create", "--read", patterns, env=site["env"])
    assert created.returncode == 0, created.stderr
    token_id = int(re.search(r"^token (\d+) ", created.stderr, re.MULTILINE).group(1))
    return token_id, created.stdout.strip().splitlines()[-1]


class EventStream:
    """An SSE client that parses the stream line by line, as EventSource does."""

    def __init__(self, site, query: str, token=None, browser=None, last_event_id=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        http = browser or requests
        self.response = http.get(
            f"{site['url']}/api/v1/stream?{query}", headers=headers, stream=True, timeout=10
        )
        self.events: list[dict] = []
        self.last_id: str | None = None
        self.comments: list[str] = []
        self._lines = self._split(self.response.iter_content(chunk_size=None))

    @staticmethod
    def _split(chunks):
        pending = ""
        for chunk in chunks:
            pending += chunk.decode()
            *lines, pending = pending.split("\n")
            yield from lines

    def next_event(self) -> dict | None:
        """The next event (None: the stream ended); ids and comments are recorded."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields.get("event") == "event":
                self.last_id = fields["id"]
                event = json.loads(fields["data"])
                self.events.append(event)
                return event
            else:
                fields = {}
        return None

    def read_until(self, done) -> list[dict]:
        while (event := self.next_event()) is not None:
            if done(event):
                return self.events
        raise AssertionError(f"the stream ended after {len(self.events)} events")

    def close(self) -> None:
        self.response.close()


def marker(name: str, topic: str = "market.ticks", **fields) -> dict:
    return {"topic": topic, "type": "tick", "payload": {"marker": name}, **fields}


def is_marker(name: str):
    return lambda event: event["payload"].get("marker") == name
