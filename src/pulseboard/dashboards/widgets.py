"""What a widget is, and which ones are valid.

Every widget reads one topic, optionally only some event types and keys, and
picks a value out of each event's payload with a dotted path (``price``,
``load.0``).  Kinds:

* ``number``  one figure: the last value, the event rate, or the min or max
  over a window;
* ``chart``   the value over time, with axes, a unit and a time range;
* ``table``   the latest value per key (a symbol, a host);
* ``log``     the latest events, newest first.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field

from ..events.envelope import TOPIC

KINDS = {
    "number": "Number",
    "chart": "Time-series chart",
    "table": "Latest value per key",
    "log": "Event log",
}
MODES = {
    "last": "Last value",
    "rate": "Events per minute",
    "min": "Minimum over the window",
    "max": "Maximum over the window",
}
# Seconds: the window of a number's rate/min/max, the range a chart shows.
WINDOWS = {60: "1 minute", 300: "5 minutes", 900: "15 minutes", 3600: "1 hour"}
RANGES = {300: "5 minutes", 900: "15 minutes", 3600: "1 hour", 21600: "6 hours", 86400: "24 hours"}
MAX_WIDGETS = 24
MAX_FILTER_ITEMS = 20
PATH = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$")
FILTER_ITEM = re.compile(r"^[^\s,]{1,64}$")


class InvalidWidget(ValueError):
    """A widget's settings cannot be used; the message says which and why."""


@dataclass
class Widget:
    kind: str
    title: str
    topic: str
    path: str = ""
    unit: str = ""
    types: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    mode: str = "last"
    window: int = 300
    range: int = 900
    id: str = field(default_factory=lambda: secrets.token_hex(4))

    def as_dict(self) -> dict:
        return asdict(self)


def split_list(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", text or "") if item]


def validate(widget: Widget) -> Widget:
    """The widget, cleaned; ``InvalidWidget`` names the first setting that is wrong."""
    if widget.kind not in KINDS:
        raise InvalidWidget(f"kind must be one of {', '.join(KINDS)}")
    widget.title = (widget.title or "").strip()
    if not widget.title or len(widget.title) > 80:
        raise InvalidWidget("title: 1 to 80 characters")
    if not TOPIC.match(widget.topic or ""):
        raise InvalidWidget(f"topic: {widget.topic!r} is not a topic name")
    widget.path = (widget.path or "").strip()
    needs_value = widget.kind in ("chart", "table") or (
        widget.kind == "number" and widget.mode != "rate"
    )
    if (needs_value or widget.path) and not PATH.match(widget.path):
        raise InvalidWidget("value path: payload fields separated by dots, e.g. price or load.0")
    widget.unit = (widget.unit or "").strip()
    if len(widget.unit) > 16:
        raise InvalidWidget("unit: at most 16 characters")
    for name in ("types", "keys"):
        items = getattr(widget, name)
        if len(items) > MAX_FILTER_ITEMS or not all(FILTER_ITEM.match(i) for i in items):
            raise InvalidWidget(f"{name}: at most {MAX_FILTER_ITEMS}, each 1 to 64 characters")
        setattr(widget, name, sorted(set(items)))
    if widget.mode not in MODES:
        raise InvalidWidget(f"mode must be one of {', '.join(MODES)}")
    if widget.window not in WINDOWS:
        raise InvalidWidget("window: choose one of the offered windows")
    if widget.range not in RANGES:
        raise InvalidWidget("range: choose one of the offered ranges")
    return widget


def from_dict(data: dict) -> Widget:
    known = {name: data[name] for name in Widget.__dataclass_fields__ if name in data}
    return Widget(**known)


def starter_widgets() -> list[dict]:
    """The first dashboard every user gets: the demo producer's streams."""
    return [
        Widget("table", "Prices", "market.ticks", path="price", unit="USD").as_dict(),
        Widget(
            "chart", "CPU", "system.metrics", path="cpu_pct", unit="%", keys=["host"], range=900
        ).as_dict(),
        Widget(
            "number", "Memory in use", "system.metrics", path="mem_pct", unit="%", keys=["host"]
        ).as_dict(),
        Widget("number", "Ticks", "market.ticks", mode="rate", window=60).as_dict(),
        Widget("log", "Notices", "notices", path="title").as_dict(),
    ]
