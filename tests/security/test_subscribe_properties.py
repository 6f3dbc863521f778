"""Whatever a client sends as ``subscribe`` or ``unsubscribe``, the server answers it,
stays up, and keeps the socket working: no hang, no crash, no error logged.

Hypothesis writes the payloads: arbitrary JSON values, and objects shaped like
the real ones with every field given odd types, sizes and characters.  They go
to a real server over a real socket, paced under the socket's own rate limit.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..streaming import StreamClient, embedded_site, ingest, signed_in_session

# Under the socket's budget of 10 messages a second (stream/state.py).
PACE_SECONDS = 0.12

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
topic_like = st.sampled_from(
    ["market.ticks", "notices", "audit", "user.1", "user.2", "*", "market.*", "", "a" * 201]
) | st.text(max_size=40)
fields = {
    "topics": st.lists(topic_like, max_size=70) | json_values,
    "types": st.lists(st.text(max_size=70), max_size=5) | json_values,
    "keys": st.lists(st.text(max_size=250), max_size=5) | json_values,
    "since": st.integers(min_value=-5, max_value=2**80) | json_values,
}
subscribe_like = st.fixed_dictionaries({}, optional=fields) | st.dictionaries(
    st.sampled_from([*fields, "extra"]), json_values, max_size=5
)
payloads = subscribe_like | json_values


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("subscribe-properties")) as found:
        yield found


@pytest.fixture(scope="module")
def bob(site):
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    yield client
    client.close()


@settings(
    max_examples=120,
    deadline=None,  # each example waits for the server; the timeout below bounds it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=payloads, message=st.sampled_from(["subscribe", "unsubscribe"]))
def test_any_subscribe_payload_gets_an_answer_and_breaks_nothing(bob, message, payload):
    time.sleep(PACE_SECONDS)
    ack = bob.call(message, payload)  # a hang is a TimeoutError here
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if not ack["ok"]:
        assert isinstance(ack.get("error"), str) and ack["error"]


def test_after_all_that_the_socket_and_the_server_still_work(site, bob):
    """Runs after the property test (same module): the marker proves the socket works."""
    subscribed = bob.call("unsubscribe", {"topics": []})["subscribed"]
    assert bob.call("unsubscribe", {"topics": subscribed}) == {"ok": True, "subscribed": []}
    assert bob.call("subscribe", {"topics": ["market.ticks"]})["ok"]
    bob.events.clear()
    [marker] = ingest(
        site["url"], site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}]
    )
    assert [event["id"] for event in bob.wait_for_events(1)] == [marker]
    log = Path(site["log"]).read_text()
    assert "Traceback" not in log, log[-3000:]
