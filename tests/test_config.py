"""Configuration: defaults per environment, and start-up refused with the variable named."""

import subprocess
import sys
from datetime import timedelta

import pytest

from pulseboard import create_app
from pulseboard.config import ConfigError, load_config

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "x" * 48,
    "DATABASE_URL": "mysql+pymysql://pb:secret@127.0.0.1/pulseboard",
    "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "APP_DOMAIN": "pulse.example.com",
}


def test_development_runs_on_embedded_defaults():
    config = load_config({"APP_ENV": "development"})
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert config["BROKER_URL"] == "memory://"
    assert config["SESSION_COOKIE_SECURE"] is False
    assert config["UI_LAYOUT"] == "both"
    assert config["WELCOME_ENABLED"] is True
    assert "http://127.0.0.1:8000" in config["PUBLIC_ORIGINS"]


def test_production_is_secure_by_default():
    config = load_config(PRODUCTION)
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["PUBLIC_ORIGINS"] == ("https://pulse.example.com",)
    assert config["PROXY_FIX_HOPS"] == 1
    assert config["SQLALCHEMY_DATABASE_URI"].endswith("?charset=utf8mb4")
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_pre_ping"] is True
    assert 30 <= options["pool_recycle"] < 3600
    assert options["pool_size"] >= 1


def test_app_env_defaults_to_production_so_nothing_runs_insecurely_by_accident():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({})


@pytest.mark.parametrize(
    ("missing", "named"),
    [("SECRET_KEY", "SECRET_KEY"), ("DATABASE_URL", "DATABASE_URL"), ("BROKER_URL", "BROKER_URL")],
)
def test_production_refuses_to_start_without_required_setting(missing, named):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError, match=named):
        load_config(env)


def test_production_refuses_a_short_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({**PRODUCTION, "SECRET_KEY": "short"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("UI_LAYOUT", "floating"),
        ("DATABASE_URL", "not a url at all"),
        ("DATABASE_URL", "postgresql://localhost/pulse"),
        ("DATABASE_URL", "mysql+mysqldb://root@localhost/pulse"),
        ("DATABASE_URL", "mysql+pymysql://root@localhost"),
        ("BROKER_URL", "redis://localhost"),
        ("BROKER_URL", "filesystem://relative/bus"),
        ("BROKER_URL", "amqp://u:p@rmq1:5672/v;memory://"),
        ("BROKER_URL", "amqp://u:p@rmq1:5672/v;"),
        ("EVENT_DELIVERY_LIMIT", "0"),
        ("BRAND_PRIMARY_COLOR", "blue"),
        ("BRAND_PRIMARY_COLOR", "#12345"),
        ("APP_SLUG", "Bad Slug"),
        ("APP_ENV", "staging"),
        ("WELCOME_ENABLED", "maybe"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DEMO_PAGES", "dashboard,casino"),
        ("PUBLIC_ORIGINS", "*"),
        ("PUBLIC_ORIGINS", "pulse.example.com"),
        ("UI_DEFAULT_THEME", "sepia"),
    ],
)
def test_invalid_setting_stops_start_up_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as error:
        create_app({"APP_ENV": "test", variable: value})
    assert str(error.value).startswith(variable)


CLUSTER = "amqp://u:secret@rmq1:5672/v; amqp://u:secret@rmq2:5672/v;amqp://u:secret@rmq3:5672/v"


def test_a_cluster_in_broker_url_makes_the_queues_quorum_queues_by_default():
    config = load_config({**PRODUCTION, "BROKER_URL": CLUSTER})
    assert config["BROKER_URL"].split(";")[1] == "amqp://u:secret@rmq2:5672/v"
    assert config["EVENT_QUEUE_TYPE"] == "quorum"
    assert config["EVENT_DELIVERY_LIMIT"] == 20
    assert load_config(PRODUCTION)["EVENT_QUEUE_TYPE"] == "classic"
    kept = load_config({**PRODUCTION, "BROKER_URL": CLUSTER, "EVENT_QUEUE_TYPE": "classic"})
    assert kept["EVENT_QUEUE_TYPE"] == "classic"


def test_a_refused_broker_url_never_shows_a_password():
    with pytest.raises(ConfigError) as error:
        load_config({**PRODUCTION, "BROKER_URL": "amqp://u:secret@rmq1/v;redis://u:secret@rmq2"})
    assert "secret" not in str(error.value) and "redis://u:**@rmq2" in str(error.value)


def test_the_broker_is_described_with_every_node_and_no_password():
    from pulseboard.events.bus import describe

    assert describe(load_config({**PRODUCTION, "BROKER_URL": CLUSTER})["BROKER_URL"]) == (
        "amqp://u:**@rmq1:5672/v;amqp://u:**@rmq2:5672/v;amqp://u:**@rmq3:5672/v"
    )


def test_start_up_failure_reaches_the_operator_as_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pulseboard", "routes"],
        env={"PATH": "/usr/bin:/bin", "APP_ENV": "test", "UI_LAYOUT": "floating"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 78  # EX_CONFIG
    assert "UI_LAYOUT must be one of topnav, sidebar, both" in result.stderr
    assert "Traceback" not in result.stderr


def test_values_are_parsed_into_types():
    config = load_config(
        {
            "APP_ENV": "development",
            "WELCOME_ENABLED": "off",
            "SESSION_IDLE_MINUTES": "30",
            "DEMO_PAGES": "dashboard, live-stream",
            "BRAND_PRIMARY_COLOR": "#FF8800",
        }
    )
    assert config["WELCOME_ENABLED"] is False
    assert config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)
    assert config["DEMO_PAGES"] == ("dashboard", "live-stream")
    assert config["BRAND_PRIMARY_COLOR"] == "#ff8800"


@pytest.mark.parametrize("mode", ["development", "test", "production"])
def test_app_factory_builds_in_each_mode(mode, tmp_path):
    env = {"APP_ENV": mode, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    if mode == "production":
        env.update({k: v for k, v in PRODUCTION.items() if k not in env})
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    app = create_app(env)
    assert app.config["APP_ENV"] == mode
    assert app.config["TESTING"] is (mode == "test")
    assert set(app.blueprints) >= {"auth", "main", "settings", "stream", "admin", "api"}
    assert app.extensions["socketio"].server.async_mode == "threading"
