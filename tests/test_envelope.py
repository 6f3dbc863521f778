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
        (encoded(topic="market.ticks\n"), "topic"),
        (encoded(type="tick\n"), "type must be"),
        (encoded(id="evt-1\n"), "id must be"),
        (b'{"payload": {"p": 1e400}}', "beyond the range of a double"),
        (encoded(payload={"a": [0, "\ud800"]}), "payload.a[1]: contains a lone UTF-16 surrogate"),
        (encoded(payload={"a": {"\udfff": 1}}), "payload.a['\\udfff']: key contains a lone"),
        (encoded(key="\ud800"), "key: contains a lone UTF-16 surrogate"),
        (encoded(payload=json.loads('{"a":' * 33 + "{}" + "}" * 33)), "nests deeper than 32"),
        (encoded(timestamp="1969-12-31T23:59:59.999Z"), "outside the accepted range"),
        (encoded(timestamp="0001-01-01T00:00:00+01:00"), "outside the accepted range"),
        (encoded(timestamp="9999-12-31T23:59:59-14:00"), "outside the accepted range"),
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


def deep(levels: int) -> dict:
    """A payload ``levels`` objects deep, built without recursion."""
    payload: dict = {}
    for _ in range(levels - 1):
        payload = {"a": payload}
    return payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"p": float("nan")}, "payload.p: nan is not a JSON number"),
        ({"p": [1, float("-inf")]}, "payload.p[1]: -inf is not a JSON number"),
        ({1: "x"}, "payload[1]: object keys must be strings"),
        ({"when": datetime(2026, 1, 1)}, "payload.when: a datetime is not a JSON value"),
        ({"n": 10**5000}, "payload cannot be written as JSON"),
        (deep(100_000), f"payload{'.a' * 32}: nests deeper than 32 levels"),
    ],
)
def test_python_callers_get_the_same_checks_as_json_input(payload, reason):
    with pytest.raises(InvalidEnvelope) as error:
        parse({**VALID, "payload": payload})
    assert reason in str(error.value)


def test_a_payload_that_contains_itself_is_refused_not_looped_over():
    payload: dict = {"list": []}
    payload["list"].append(payload)
    with pytest.raises(InvalidEnvelope, match="nests deeper than 32 levels"):
        parse({**VALID, "payload": payload})


def test_the_depth_limit_is_configurable():
    assert parse(encoded(payload=deep(32)))
    assert parse(encoded(payload=deep(3)), max_depth=3)
    with pytest.raises(InvalidEnvelope, match=r"payload\.a\.a: nests deeper than 2 levels"):
        parse(encoded(payload=deep(3)), max_depth=2)


def test_timestamps_at_both_ends_of_the_accepted_range_are_kept():
    for moment in ("1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999+00:00"):
        envelope = parse(encoded(timestamp=moment))
        assert parse(envelope.to_json()) == envelope


def test_a_mapping_is_measured_as_it_will_travel_on_the_bus():
    # "…07Z" travels as "…07.000Z": four bytes more than the mapping as given.
    data = {**VALID, "timestamp": "2026-11-26T14:03:07Z", "payload": {"blob": ""}}
    data["payload"]["blob"] = "x" * (2048 - len(json.dumps(data, separators=(",", ":"))) - 2)
    with pytest.raises(InvalidEnvelope, match="message is 2050 bytes; the limit is 2048"):
        parse(data, max_bytes=2048)


def test_a_reason_never_carries_a_lone_surrogate_to_logs_or_headers():
    with pytest.raises(InvalidEnvelope) as error:
        parse({**VALID, "extra\ud800": 1})
    assert str(error.value).encode("utf-8") == b"unknown field(s): extra\\ud800"


def test_what_travels_is_what_was_checked_even_if_the_caller_changes_the_payload_after():
    payload = {"price": 1.5, "tags": ["a"]}
    envelope = new_envelope("market.ticks", "tick", payload)
    checked = envelope.to_json()
    payload["price"] = float("nan")  # not JSON: the consumer would dead-letter it
    payload["tags"].append("\ud800")  # not text
    assert envelope.to_json() == checked
    assert parse(envelope.to_json()).payload == {"price": 1.5, "tags": ["a"]}
