"""Notices as toasts: every ``notice`` event of a round is also sent as a ``notice``
message, which the page shows as a toast (``static/js/stream.js``)."""

from __future__ import annotations

import logging

from .names import NOTICE
from .socket_write import encode

log = logging.getLogger(__name__)


def toast_packets(server, events: list[dict]) -> list:
    """The packets of a ``notice`` message for each notice among ``events``, in order.
    A notice that cannot be shown is logged and left out; the others still are."""
    packets = []
    for event in events:
        if event["type"] != NOTICE:
            continue
        try:
            packets += encode(server, NOTICE, notice_payload(event))
        except Exception:
            log.exception("notice seq %s cannot be shown as a toast", event.get("seq"))
    return packets


def notice_payload(event: dict) -> dict:
    payload = event["payload"]
    return {
        "id": event["id"],
        "level": payload.get("level", "info"),
        "title": payload.get("title", ""),
        "body": payload.get("body", ""),
        "created_at": event["timestamp"],
    }
