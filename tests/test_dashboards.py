"""Dashboards through their forms: what is saved, what is refused, who may see what."""

from __future__ import annotations

import re

import pytest

from pulseboard.dashboards.models import Dashboard
from pulseboard.dashboards.widgets import MAX_WIDGETS, InvalidWidget, Widget, validate
from pulseboard.extensions import db

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WIDGET = {
    "kind": "chart",
    "title": "CPU",
    "topic": "system.metrics",
    "path": "cpu_pct",
    "unit": "%",
    "types": "",
    "keys": "host",
    "mode": "last",
    "window": "300",
    "range": "900",
}


@pytest.fixture
def ada(make_user, auth):
    make_user()
    auth.login()
    return auth.client


def token(client, path="/dashboards/") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def create(client, name="Desk") -> int:
    response = client.post("/dashboards/", data={"name": name, "csrf_token": token(client)})
    assert response.status_code == 302
    return int(re.search(r"/dashboards/(\d+)/edit", response.location).group(1))


def add(client, dashboard_id: int, **changes):
    data = {**WIDGET, **changes, "csrf_token": token(client, f"/dashboards/{dashboard_id}/edit")}
    return client.post(f"/dashboards/{dashboard_id}/widgets", data=data)


def widgets_of(app, dashboard_id: int) -> list[dict]:
    with app.app_context():
        return db.session.get(Dashboard, dashboard_id).widgets


def test_widgets_are_saved_in_order_and_can_be_moved_and_removed(app, ada):
    dashboard = create(ada)
    assert add(ada, dashboard).status_code == 302
    assert add(ada, dashboard, kind="table", title="Prices", topic="market.ticks", path="price",
               keys="ACME, GLOBX").status_code == 302  # fmt: skip
    first, second = widgets_of(app, dashboard)
    assert (first["title"], second["title"]) == ("CPU", "Prices")
    assert second["keys"] == ["ACME", "GLOBX"] and first["range"] == 900
    edit = f"/dashboards/{dashboard}/edit"
    ada.post(
        f"/dashboards/{dashboard}/widgets/{second['id']}/up", data={"csrf_token": token(ada, edit)}
    )
    assert [w["title"] for w in widgets_of(app, dashboard)] == ["Prices", "CPU"]
    ada.post(
        f"/dashboards/{dashboard}/widgets/{first['id']}/delete",
        data={"csrf_token": token(ada, edit)},
    )
    assert [w["title"] for w in widgets_of(app, dashboard)] == ["Prices"]  # fmt: skip


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"path": "cpu pct"}, "value path"),
        ({"path": ""}, "value path"),
        ({"topic": "no spaces allowed"}, "is not a topic name"),
        ({"topic": "audit"}, "You may not read audit."),
        ({"kind": "pie"}, "Not a valid choice"),
        ({"range": "7"}, "Not a valid choice"),
        ({"keys": "x" * 65}, "keys: at most 20, each 1 to 64 characters"),
    ],
)
def test_a_bad_widget_is_refused_with_a_reason_and_nothing_saved(app, ada, changes, message):
    dashboard = create(ada)
    response = add(ada, dashboard, **changes)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert widgets_of(app, dashboard) == []


def test_a_dashboard_holds_a_bounded_number_of_widgets(app, ada):
    dashboard = create(ada)
    with app.app_context():
        record = db.session.get(Dashboard, dashboard)
        record.widgets = [Widget("log", f"w{n}", "notices").as_dict() for n in range(MAX_WIDGETS)]
        db.session.commit()
    assert add(ada, dashboard).status_code == 400
    assert len(widgets_of(app, dashboard)) == MAX_WIDGETS


def test_only_the_owner_edits_and_others_see_only_what_is_shared(app, make_user, auth, client):
    make_user()
    make_user("bob@example.com", "Bob")
    auth.login()
    dashboard = create(client, "Private plans")
    assert add(client, dashboard).status_code == 302
    client.post("/auth/logout", data={"csrf_token": token(client)})

    auth.login("bob@example.com")
    assert client.get(f"/dashboards/{dashboard}").status_code == 404
    assert client.get(f"/dashboards/{dashboard}/edit").status_code == 404
    assert "Private plans" not in client.get("/dashboards/").get_data(as_text=True)
    refused = client.post(f"/dashboards/{dashboard}/delete", data={"csrf_token": token(client)})
    assert refused.status_code == 404

    with app.app_context():
        db.session.get(Dashboard, dashboard).shared = True
        db.session.commit()
    assert "Private plans" in client.get("/dashboards/").get_data(as_text=True)
    assert client.get(f"/dashboards/{dashboard}").status_code == 200
    assert client.get(f"/dashboards/{dashboard}/edit").status_code == 404
    assert add(client, dashboard).status_code == 404


def test_validation_cleans_what_it_keeps():
    widget = validate(
        Widget("number", "  Rate ", "market.ticks", mode="rate", keys=["B", "A", "B"])
    )
    assert (widget.title, widget.keys, widget.path) == ("Rate", ["A", "B"], "")
    with pytest.raises(InvalidWidget, match="value path"):
        validate(Widget("number", "Last", "market.ticks", mode="last"))
