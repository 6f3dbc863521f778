"""The envelope: every malformed event is refused with a reason a producer can act on."""

import json
from datetime import UTC, datetime

import pytest

from pulseboard.events.envelope import InvalidEnvelope, new_envelope, parse

VALID = {
    "id": "evt-1",
    "topic": "market.ticks",
    "type": "tick",
    "timestamp": "2026-11-26T14:03:07.123Z",
    "payload": {"symbol": "ACME", "price": 12.5},
    "key": "ACME",
}


def encoded(**changes) -> bytes:
    data = {**VALID, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_a_valid_envelope_parses_with_an_aware_timestamp():
    envelope = parse(encoded())
    assert envelope.topic == "market.ticks"
    assert envelope.key == "ACME"
    assert envelope.timestamp == datetime(2026, 11, 26, 14, 3, 7, 123000, tzinfo=UTC)
    assert json.loads(envelope.to_json()) == VALID


def test_offsets_are_converted_to_utc():
    envelope = parse(encoded(timestamp="2026-11-26T16:03:07.123+02:00"))
    assert envelope.timestamp.hour == 14


def test_new_envelope_fills_in_id_and_time():
    envelope = new_envelope("system.metrics", "host", {"cpu_pct": 3.5})
    assert len(envelope.id) == 32
    assert envelope.key is None
    assert "key" not in envelope.as_dict()
    assert envelope.as_dict()["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json}", "not JSON"),
        (b'{"payload": NaN}', "not JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (encoded(id=...), "missing field(s): id"),
        (encoded(topic=..., type=...), "missing field(s): topic, type"),
        (encoded(payload=None), "missing field(s): payload"),
        (encoded(extra=1), "unknown field(s): extra"),
        (encoded(id=42), "id must be a string"),
        (encoded(id="has space"), "id must be"),
        (encoded(id="x" * 129), "id must be"),
        (encoded(topic="Market.Ticks"), "topic"),
        (encoded(topic="market..ticks"), "topic"),
        (encoded(topic="market.ticks."), "topic"),
        (encoded(topic="a" * 201), "topic"),
        (encoded(topic="market.*"), "topic"),
        (encoded(type="has space"), "type must be"),
        (encoded(type=""), "type must be"),
        (encoded(timestamp="yesterday"), "not ISO 8601"),
        (encoded(timestamp="2026-11-26T14:03:07"), "needs a time zone"),
        (encoded(timestamp=1764165787), "timestamp must be a string"),
        (encoded(payload=[1, 2]), "payload must be a JSON object"),
        (encoded(payload="text"), "payload must be a JSON object"),
        (encoded(key=7), "key must be a string"),
        (encoded(key=""), "key must be a string"),
        (encoded(payload={"blob": "x" * 70_000}), "the limit is 65536"),
    ],
)
def test_malformed_envelopes_are_refused_with_the_reason(raw, reason):
    with pytest.raises(InvalidEnvelope) as error:
        parse(raw)
    assert reason in str(error.value)


def test_the_size_cap_is_configurable():
    with pytest.raises(InvalidEnvelope, match="limit is 2048"):
        parse(encoded(payload={"blob": "x" * 3000}), max_bytes=2048)
    assert parse(encoded(payload={"blob": "x" * 3000}), max_bytes=8192)


def test_non_ascii_text_is_kept_intact():
    envelope = parse(encoded(payload={"note": "Zürich 東京 🚀"}))
    assert envelope.payload["note"] == "Zürich 東京 🚀"
    assert "東京".encode() in envelope.to_json()
