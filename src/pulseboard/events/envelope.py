"""The event envelope: what every producer sends and every consumer checks.

    {"id": "...", "topic": "market.ticks", "type": "tick",
     "timestamp": "2026-11-26T14:03:07.123Z", "payload": {...}, "key": "ABC"}

``parse`` turns raw bytes (or an already-decoded mapping) into an ``Envelope`` or
raises ``InvalidEnvelope`` with one sentence an operator can act on.  Browsers
get the same fields plus ``seq``, assigned when the event is stored.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# 64 KiB of JSON is plenty for a dashboard update; larger belongs in a URL.
DEFAULT_MAX_BYTES = 64 * 1024
FIELDS = frozenset({"id", "topic", "type", "timestamp", "payload", "key"})
REQUIRED = ("id", "topic", "type", "timestamp", "payload")

# Dot-separated lowercase words, as RabbitMQ routing keys: "market.ticks", "user.42".
TOPIC = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(\.[a-z0-9][a-z0-9_-]{0,62}){0,7}$")
TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
MAX_TOPIC = 200
MAX_KEY = 200


class InvalidEnvelope(ValueError):
    """The message is not a valid event; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    topic: str
    type: str
    timestamp: datetime
    payload: dict[str, Any]
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "topic": self.topic,
            "type": self.type,
            "timestamp": format_timestamp(self.timestamp),
            "payload": self.payload,
        }
        if self.key is not None:
            data["key"] = self.key
        return data

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def new_envelope(
    topic: str, type: str, payload: dict[str, Any], key: str | None = None
) -> Envelope:
    """An envelope with a fresh id and the current time, validated like any other."""
    return parse(
        {
            "id": uuid.uuid4().hex,
            "topic": topic,
            "type": type,
            "timestamp": format_timestamp(datetime.now(UTC)),
            "payload": payload,
            "key": key,
        }
    )


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(raw: bytes | str | dict, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Validate ``raw`` and return the envelope, or raise ``InvalidEnvelope``."""
    if isinstance(raw, dict):
        data = raw
        size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
    else:
        if isinstance(raw, str):
            raw = raw.encode()
        size = len(raw)
        if size > max_bytes:
            raise InvalidEnvelope(f"message is {size} bytes; the limit is {max_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEnvelope("message is not UTF-8") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise InvalidEnvelope(f"message is not JSON ({error.msg} at {error.pos})") from None
        except ValueError as error:
            raise InvalidEnvelope(f"message is not JSON ({error})") from None
    if size > max_bytes:
        raise InvalidEnvelope(f"message is {size} bytes; the limit is {max_bytes}")
    if not isinstance(data, dict):
        raise InvalidEnvelope("message must be a JSON object")
    return _from_mapping(data)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _from_mapping(data: dict) -> Envelope:
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InvalidEnvelope(f"unknown field(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED if data.get(name) is None]
    if missing:
        raise InvalidEnvelope(f"missing field(s): {', '.join(missing)}")
    for name in ("id", "topic", "type", "timestamp"):
        if not isinstance(data[name], str):
            raise InvalidEnvelope(f"{name} must be a string")
    if not ID.match(data["id"]):
        raise InvalidEnvelope("id must be 1-128 printable ASCII characters without spaces")
    topic = data["topic"]
    if len(topic) > MAX_TOPIC or not TOPIC.match(topic):
        raise InvalidEnvelope(
            f"topic {topic[:80]!r} is not dot-separated lowercase words like market.ticks"
        )
    if not TYPE.match(data["type"]):
        raise InvalidEnvelope("type must be 1-64 letters, digits or _ . : -")
    if not isinstance(data["payload"], dict):
        raise InvalidEnvelope("payload must be a JSON object")
    key = data.get("key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY):
        raise InvalidEnvelope(f"key must be a string of 1-{MAX_KEY} characters")
    return Envelope(
        id=data["id"],
        topic=topic,
        type=data["type"],
        timestamp=_parse_timestamp(data["timestamp"]),
        payload=data["payload"],
        key=key,
    )


def _parse_timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEnvelope(
            f"timestamp {value[:40]!r} is not ISO 8601 (2026-11-26T14:03:07.123Z)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidEnvelope("timestamp needs a time zone (end it with Z for UTC)")
    return moment.astimezone(UTC)
