"""Property: whatever a token holder sends, the ingest API answers, and keeps its word.

Hypothesis writes request bodies from raw bytes up to envelopes whose every
field may be odd: strings with lone surrogates and control characters, NaN,
1e400 and ints of thousands of digits, timestamps from year 1 to 9999 with any
offset, payloads nested thousands deep.  The API must never answer 5xx, and
every event it accepts (202) must be one the real consumer stores: none
dead-lettered, each in the log under its topic and id.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from pulseboard.extensions import db
from pulseboard.models import Event

from ..pipeline import wait_for
from .ingest import post, running_consumer, token_for

ANSWERS = {202, 400, 403, 413}

# Every code point, lone surrogates included (Hypothesis leaves those out by default).
odd_text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\n", "market.ticks\n", "\ud800", "a\x00b", "\u2028", "x" * 300]
)
odd_numbers = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "1" + "0" * 5000]
)


def json_values(text, floats):
    scalars = st.none() | st.booleans() | st.integers() | floats | text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=12,
    )


plain_values = json_values(st.text(max_size=12), st.floats(allow_nan=False, allow_infinity=False))
odd_values = json_values(odd_text, st.floats() | st.integers(min_value=10**300, max_value=10**320))


def as_json(value) -> str:
    """JSON text, NaN and lone surrogates written as such (escaped, so still UTF-8)."""
    return json.dumps(value, allow_nan=True)


def nested_text(levels: int, opener: str) -> str:
    closer = {"[": "]", '{"k":': "}"}[opener]
    return '{"deep":' + opener * levels + "0" + closer * levels + "}"


offsets = st.integers(min_value=-24 * 60 + 1, max_value=24 * 60 - 1).map(
    lambda minutes: f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
)
# Each field: what a producer usually sends (sometimes right at the edges) ...
usual = {
    "id": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
    "topic": st.sampled_from(["market.ticks", "other.feed", "user.2"])
    | st.from_regex(r"[a-z][a-z0-9_-]{0,8}(\.[a-z0-9][a-z0-9_-]{0,8}){0,3}", fullmatch=True),
    "type": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,8}", fullmatch=True),
    "timestamp": st.builds(
        lambda moment, zone: moment.isoformat() + zone,
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        offsets | st.just("Z"),
    ),
    "payload": st.dictionaries(st.text(max_size=12), plain_values, max_size=4),
    "key": st.text(min_size=1, max_size=20),
}
# ... and what an attacker tries instead.
unusual = {
    "id": odd_text,
    "topic": st.sampled_from(["notices", "market.ticks\n", "a" * 201]) | odd_text,
    "type": st.sampled_from(["notice", "Notice", "tick\n"]) | odd_text,
    "timestamp": st.sampled_from(
        ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"]
    )
    | st.builds(lambda moment: moment.isoformat() + "Z", st.datetimes())
    | odd_text,
    "payload": st.dictionaries(odd_text, odd_values, max_size=4),
    "key": odd_text,
}
deep_payloads = st.builds(
    nested_text, st.integers(min_value=1, max_value=3000), st.sampled_from(["[", '{"k":'])
)


USUAL = ["usual"] * 8


@st.composite
def envelopes(draw) -> str:
    """An envelope as JSON text, each field usual, unusual, of another kind or absent."""
    parts = []
    for name in usual:
        # Hypothesis favours the ends of a range: keep the usual there.
        choice = draw(st.sampled_from([*USUAL, "unusual", "other kind", "absent", *USUAL]))
        if choice == "absent":
            continue
        if choice == "other kind":
            text = draw(st.builds(as_json, odd_values) | odd_numbers)
        elif name == "payload" and choice == "unusual":
            text = draw(
                st.builds(as_json, unusual[name])
                | deep_payloads
                | odd_numbers.map(lambda number: '{"n":' + number + "}")
            )
        else:
            text = as_json(draw((usual if choice == "usual" else unusual)[name]))
        parts.append(f"{as_json(name)}:{text}")
    if draw(st.integers(0, 19)) == 7:
        parts.append(f"{as_json(draw(odd_text))}:{as_json(draw(odd_values))}")
    return "{" + ",".join(parts) + "}"


single_events = envelopes().map(str.encode)
batches = st.lists(envelopes(), max_size=4).map(lambda items: f"[{','.join(items)}]".encode())
# Mostly envelopes, so that many are accepted and the promise behind 202 is tested too.
bodies = st.one_of(
    single_events,
    single_events,
    single_events,
    batches,
    batches,
    st.builds(as_json, odd_values).map(str.encode),
    st.binary(max_size=64),
)


@pytest.mark.timeout(180)
def test_any_body_gets_an_answer_and_every_accepted_event_is_stored(make_app):
    app = make_app(APP_SLUG=f"pbt-{secrets.token_hex(4)}", API_MAX_BATCH="3")
    token = token_for(app, "*")
    accepted: set[tuple[str, str]] = set()

    with running_consumer(app) as consumer:

        @settings(
            max_examples=200,
            deadline=timedelta(seconds=5),
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(body=bodies)
        def check(body: bytes):
            # A repeated (topic, id) is emitted again too: wait for this request's own.
            emitted_before = len(consumer.emitted)
            response = post(app, body, token)
            event(f"HTTP {response.status_code}")
            assert response.status_code in ANSWERS, (response.status_code, response.get_data())
            assert response.is_json
            if response.status_code != 202:
                return
            sent = json.loads(body)
            items = sent if isinstance(sent, list) else [sent]
            ids = response.get_json()["accepted"]
            assert len(ids) == len(items)
            keys = {(item["topic"], event_id) for item, event_id in zip(items, ids, strict=True)}
            accepted.update(keys)
            wait_for(
                lambda: keys <= consumer.emitted_keys(emitted_before) or consumer.dead_lettered,
                10,
                message="the accepted events stored",
            )
            assert consumer.dead_lettered == 0

        check()

    with app.app_context():
        stored = {tuple(row) for row in db.session.execute(select(Event.topic, Event.event_id))}
    assert accepted <= stored
