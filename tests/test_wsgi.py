"""The production entry point: gunicorn's gevent worker serving pulseboard.wsgi:app."""

import json
import subprocess

import pytest
import requests
import websocket

from .servers import PROJECT_ROOT, VENV_BIN, base_env, free_port, gunicorn, run_cli


@pytest.fixture
def server_env(tmp_path):
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'served.db'}", TMPDIR=str(tmp_path))
    migrated = run_cli("db", "upgrade", env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def test_gunicorn_gevent_serves_pages_and_probes(server_env):
    with gunicorn(server_env) as url:
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
        home = requests.get(f"{url}/", timeout=5)
        assert home.status_code == 200
        assert "text/html" in home.headers["Content-Type"]
        assert requests.get(f"{url}/static/vendor/bootstrap/css/bootstrap.min.css", timeout=5).ok


def test_socketio_answers_over_polling_and_upgrades_to_websocket(server_env):
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with gunicorn({**server_env, "PUBLIC_ORIGINS": origin}, port=port) as url:
        handshake = requests.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=5)
        assert handshake.status_code == 200
        assert handshake.text.startswith("0")
        opened = json.loads(handshake.text[1:])
        assert "websocket" in opened["upgrades"]

        # A real WebSocket: only a gevent worker with WebSocket support gets this far.
        ws_url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ws = websocket.create_connection(ws_url, timeout=5, origin=origin)
        try:
            assert ws.recv().startswith("0{")
        finally:
            ws.close()

        # Another site's page may not open a socket here.
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url, timeout=5, origin="https://evil.example")
        assert refused.value.status_code == 400


def test_gunicorn_refuses_to_start_on_bad_configuration_and_names_the_variable(server_env):
    env = {**server_env, "UI_LAYOUT": "floating"}
    result = subprocess.run(
        [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{free_port()}"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "configuration error: UI_LAYOUT must be one of" in result.stderr


def test_gunicorns_master_loads_the_logger_class_without_importing_ssl():
    """gunicorn.conf.py names our logger class; the master imports it before the gevent
    worker patches the standard library, so it must not pull in ssl (gevent warns, and
    outbound HTTPS from the worker may misbehave)."""
    probe = (
        "import sys, pulseboard.gunicorn_logging; "
        "heavy = ('ssl', 'flask', 'urllib3', 'sqlalchemy'); "
        "loaded = [m for m in heavy if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", probe],
        capture_output=True, text=True, timeout=60, check=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.stdout.strip() == ""
