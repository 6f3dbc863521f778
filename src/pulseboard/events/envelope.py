"""The event envelope: what every producer sends and every consumer checks.

    {"id": "...", "topic": "market.ticks", "type": "tick",
     "timestamp": "2026-11-26T14:03:07.123Z", "payload": {...}, "key": "ABC"}

``parse`` turns raw bytes (or an already-decoded mapping) into an ``Envelope`` or
raises ``InvalidEnvelope`` with one sentence an operator can act on.  Browsers
get the same fields plus ``seq``, assigned when the event is stored.

Every entry (HTTP API, bus consumer, Python API, CLI) goes through ``parse``,
so an event one of them accepts is one the others accept, store and deliver:
nothing gets past it that the event log, the JSON encoders downstream or a
browser cannot take.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# 64 KiB of JSON is plenty for a dashboard update; larger belongs in a URL.
DEFAULT_MAX_BYTES = 64 * 1024
# Levels of objects and arrays in a payload, the payload itself being the first.
# Every JSON encoder downstream (python-socketio's included) recurses once per
# level, so an unbounded depth would let one event break delivery for everyone.
DEFAULT_MAX_DEPTH = 32
# Timestamps both databases can hold (MySQL's DATETIME ends with year 9999) and
# every client can turn into a Unix time (from 1970).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# JSON as events travel and are stored: compact, UTF-8 as is (one encoder, made once).
compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
FIELDS = frozenset({"id", "topic", "type", "timestamp", "payload", "key"})
REQUIRED = ("id", "topic", "type", "timestamp", "payload")

# Anchored at both ends with \Z (a "$" would let a trailing newline through),
# so other modules' .match() is as strict as fullmatch().
# Dot-separated lowercase words, as RabbitMQ routing keys: "market.ticks", "user.42".
TOPIC = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(\.[a-z0-9][a-z0-9_-]{0,62}){0,7}\Z")
TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
ID = re.compile(r"^[\x21-\x7e]{1,128}\Z")  # printable ASCII, no spaces
MAX_TOPIC = 200
MAX_KEY = 200
# Half of a UTF-16 pair alone: Python keeps it in a str, UTF-8 cannot encode it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
# Strings (skipped whole) and brackets, to find where a body nests too deep.
JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


class InvalidEnvelope(ValueError):
    """The message is not a valid event; ``str()`` says why, always as encodable text."""

    def __init__(self, reason: str):
        # The reason travels in HTTP bodies, logs and AMQP headers: no lone surrogates.
        super().__init__(reason.encode("utf-8", "backslashreplace").decode("utf-8"))


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    topic: str
    type: str
    timestamp: datetime
    payload: dict[str, Any]
    key: str | None = None
    # The wire form ``parse`` measured, kept: it is what travels, and encoding it
    # again for the broker would cost as much as the whole check did.
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

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
        if self._json is None:
            object.__setattr__(self, "_json", compact_json(self.as_dict()).encode())
        return self._json


def new_envelope(
    topic: str,
    type: str,
    payload: dict[str, Any],
    key: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
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
        },
        max_bytes=max_bytes,
        max_depth=max_depth,
    )


def from_producer(item: Any, max_bytes: int, max_depth: int) -> Envelope:
    """An event as a producer sends it (an API body's item, a line of the CLI's input):
    a full envelope kept as sent, or one without id and timestamp given fresh ones."""
    if not isinstance(item, dict):
        raise InvalidEnvelope("each event must be a JSON object")
    if "id" not in item and "timestamp" not in item:
        item = {**item, "id": uuid.uuid4().hex, "timestamp": format_timestamp(datetime.now(UTC))}
    return parse(item, max_bytes=max_bytes, max_depth=max_depth)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(
    raw: bytes | str | dict,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Envelope:
    """Validate ``raw`` and return the envelope, or raise ``InvalidEnvelope``."""
    if isinstance(raw, dict):
        envelope = _from_mapping(raw, max_bytes, max_depth)
        # Measured as it will travel, so what passes here passes the consumer too.
        try:
            size = len(envelope.to_json())
        except ValueError as error:  # an int too long to print, from Python callers
            raise InvalidEnvelope(f"payload cannot be written as JSON ({error})") from None
        if size > max_bytes:
            raise InvalidEnvelope(f"message is {size} bytes; the limit is {max_bytes}")
        return envelope
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate then fails as not UTF-8
    if len(raw) > max_bytes:
        raise InvalidEnvelope(f"message is {len(raw)} bytes; the limit is {max_bytes}")
    data = loads(raw, "message", max_depth)
    if not isinstance(data, dict):
        raise InvalidEnvelope("message must be a JSON object")
    return _from_mapping(data, max_bytes, max_depth)


def loads(raw: bytes, what: str = "message", max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, no number beyond a double's range."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEnvelope(f"{what} is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise InvalidEnvelope(f"{what} is not JSON ({error.msg} at {error.pos})") from None
    except RecursionError:
        # The decoder recurses per level; the payload walk below cannot run on what it refused.
        where = _nesting_exceeded_at(text, max_depth)
        raise InvalidEnvelope(
            f"{what} nests deeper than a payload's {max_depth} levels (at character {where})"
        ) from None
    except ValueError as error:
        raise InvalidEnvelope(f"{what} is not JSON ({error})") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return number


def _nesting_exceeded_at(text: str, max_depth: int) -> int:
    """Where the nesting first passes a payload's limit plus the envelope and batch around it."""
    depth = 0
    for token in JSON_NESTING.finditer(text):
        bracket = text[token.start()]
        if bracket in "[{":
            depth += 1
            if depth > max_depth + 2:
                return token.start()
        elif bracket in "]}":
            depth -= 1
    return len(text)


def _from_mapping(data: dict, max_bytes: int, max_depth: int) -> Envelope:
    unknown = sorted(map(str, set(data) - FIELDS))
    if unknown:
        raise InvalidEnvelope(f"unknown field(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED if data.get(name) is None]
    if missing:
        raise InvalidEnvelope(f"missing field(s): {', '.join(missing)}")
    for name in ("id", "topic", "type", "timestamp"):
        if not isinstance(data[name], str):
            raise InvalidEnvelope(f"{name} must be a string")
    if not ID.fullmatch(data["id"]):
        raise InvalidEnvelope("id must be 1-128 printable ASCII characters without spaces")
    topic = data["topic"]
    if len(topic) > MAX_TOPIC or not TOPIC.fullmatch(topic):
        raise InvalidEnvelope(
            f"topic {topic[:80]!r} is not dot-separated lowercase words like market.ticks"
        )
    if not TYPE.fullmatch(data["type"]):
        raise InvalidEnvelope("type must be 1-64 letters, digits or _ . : -")
    if not isinstance(data["payload"], dict):
        raise InvalidEnvelope("payload must be a JSON object")
    key = data.get("key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY):
        raise InvalidEnvelope(f"key must be a string of 1-{MAX_KEY} characters")
    if key is not None and LONE_SURROGATE.search(key):
        raise InvalidEnvelope("key: contains a lone UTF-16 surrogate, which is not text")
    timestamp = _parse_timestamp(data["timestamp"])
    check_payload(data["payload"], max_depth, max_nodes=max_bytes)
    return Envelope(
        id=data["id"],
        topic=topic,
        type=data["type"],
        timestamp=timestamp,
        payload=data["payload"],
        key=key,
    )


def check_payload(payload: dict, max_depth: int, max_nodes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse what JSON cannot carry or delivery cannot encode, naming where it is.

    An explicit stack, not recursion: the walk must not fail on the very depth it
    refuses.  ``max_nodes`` stops shared or cyclic structures from Python callers
    early: each JSON value takes at least a byte, so the byte limit bounds them too.
    """
    stack: list[tuple[Any, int, tuple]] = [(payload, 1, ())]
    nodes = 0
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise InvalidEnvelope(f"payload holds more than {max_nodes} values")
        if isinstance(value, str):
            if not value.isascii() and LONE_SURROGATE.search(value):
                _refuse(path, "contains a lone UTF-16 surrogate, which is not text")
        elif isinstance(value, dict):
            if depth > max_depth:
                _refuse(path, f"nests deeper than {max_depth} levels")
            for name, item in reversed(value.items()):
                if not isinstance(name, str):
                    _refuse((path, name), "object keys must be strings")
                if not name.isascii() and LONE_SURROGATE.search(name):
                    _refuse((path, name), "key contains a lone UTF-16 surrogate, which is not text")
                stack.append((item, depth + 1, (path, name)))
        elif isinstance(value, list | tuple):
            if depth > max_depth:
                _refuse(path, f"nests deeper than {max_depth} levels")
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], depth + 1, (path, index)))
        elif isinstance(value, float):
            if not math.isfinite(value):
                _refuse(path, f"{value} is not a JSON number")
        elif not (value is None or isinstance(value, int)):  # bool is an int
            _refuse(path, f"a {type(value).__name__} is not a JSON value")


def _refuse(path: tuple, reason: str):
    raise InvalidEnvelope(f"{_path_text(path)}: {reason}")


def _path_text(path: tuple) -> str:
    """``payload.a[3]``, from the (parent, step) chain the walk keeps."""
    steps = []
    while path:
        path, step = path
        if isinstance(step, int) and not isinstance(step, bool):
            steps.append(f"[{step}]")
        elif isinstance(step, str) and PLAIN_NAME.fullmatch(step):
            steps.append(f".{step}")
        else:
            steps.append(f"[{repr(step)[:40]}]")
    return "payload" + "".join(reversed(steps))


def _parse_timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEnvelope(
            f"timestamp {value[:40]!r} is not ISO 8601 (2026-11-26T14:03:07.123Z)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidEnvelope("timestamp needs a time zone (end it with Z for UTC)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # the offset moves it past year 1 or 9999
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise InvalidEnvelope(
            f"timestamp {value[:40]!r} is outside the accepted range, "
            f"{format_timestamp(EARLIEST)} to {format_timestamp(LATEST)}"
        )
    return moment
