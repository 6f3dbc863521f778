"""Configuration: read once from the environment, validated before the app starts.

Every setting an operator can change lives here, with its default and the check
that rejects a bad value.  A bad value stops start-up with a ``ConfigError``
naming the variable to fix, instead of failing later inside a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .config_error import ConfigError
from .oauth_config import load_oauth_config
from .proxies import networks

PROJECT_ROOT = Path(__file__).resolve().parents[2]

ENVIRONMENTS = ("development", "test", "production")
LAYOUTS = ("topnav", "sidebar", "both")
THEMES = ("auto", "light", "dark")
DEMO_PAGES = (
    "dashboard",
    "profile",
    "settings",
    "admin",
    "docs",
    "pricing",
    "design-system",
    "live-stream",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]\Z")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}\Z")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?\Z")
# A development key is fine on a laptop and fatal anywhere else, so it is only
# ever filled in for the development and test environments.
_DEV_SECRET_KEY = "dev-only-secret-key-not-for-production"  # noqa: S105


class _Reader:
    """Typed access to an environment mapping that reports the variable at fault."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def bool(self, name: str, default: bool) -> bool:
        value = self.env.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, not {value!r}")

    def int(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{name} must be at least {minimum}{upper}, not {value}")
        return value

    def float(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.str(name) or default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        raw = self.str(name)
        if raw is None:
            return default
        return tuple(item.strip() for item in raw.split(",") if item.strip())


def load_config(env: Mapping[str, str] | None = None) -> dict:
    """Build the Flask config mapping from ``env`` (``os.environ`` by default)."""
    read = _Reader(os.environ if env is None else env)
    app_env = read.choice("APP_ENV", ENVIRONMENTS, "production")
    production = app_env == "production"

    secret_key = read.str("SECRET_KEY")
    if secret_key is None:
        if production:
            raise ConfigError(
                "SECRET_KEY is not set. Generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` "
                "and put it in the environment (or .env)."
            )
        secret_key = _DEV_SECRET_KEY
    elif production and (secret_key == _DEV_SECRET_KEY or len(secret_key) < 32):
        raise ConfigError("SECRET_KEY must be a random value of at least 32 characters")

    slug = read.str("APP_SLUG", "pulseboard")
    if not _SLUG.match(slug):
        raise ConfigError(
            f"APP_SLUG must be 2-32 lowercase letters, digits or dashes, "
            f"starting with a letter, not {slug!r}"
        )

    database_url = _database_url(read, app_env)
    broker_url = _broker_url(read, app_env)

    bind = _bind_address(read)
    hops = read.int("PROXY_FIX_HOPS", 1 if production else 0, maximum=5)
    color = read.str("BRAND_PRIMARY_COLOR", "#4f46e5")
    if not _COLOR.match(color):
        raise ConfigError(f"BRAND_PRIMARY_COLOR must be a colour like #4f46e5, not {color!r}")

    demo_pages = read.list("DEMO_PAGES", DEMO_PAGES)
    unknown = sorted(set(demo_pages) - set(DEMO_PAGES))
    if unknown:
        raise ConfigError(
            f"DEMO_PAGES has unknown page(s) {', '.join(unknown)}; "
            f"choose from {', '.join(DEMO_PAGES)}"
        )

    domain = read.str("APP_DOMAIN", "localhost")
    port = read.int("PORT", 8000, minimum=1, maximum=65535)
    default_origin = f"http://127.0.0.1:{port},http://localhost:{port}" if not production else ""
    origins = read.list("PUBLIC_ORIGINS") or tuple(
        o for o in (default_origin.split(",") if default_origin else [f"https://{domain}"])
    )
    for origin in origins:
        if origin == "*" or not _ORIGIN.match(origin):
            raise ConfigError(
                f"PUBLIC_ORIGINS must list origins like https://app.example.com, not {origin!r}"
            )

    public_url = _public_url(read, origins)

    secure_cookies = read.bool("SESSION_COOKIE_SECURE", production)
    idle_minutes = read.int("SESSION_IDLE_MINUTES", 120, minimum=1)
    absolute_hours = read.int("SESSION_ABSOLUTE_HOURS", 24 * 7, minimum=1)

    return {
        "APP_ENV": app_env,
        "DEBUG": False,
        "TESTING": app_env == "test",
        "SECRET_KEY": secret_key,
        "APP_NAME": read.str("APP_NAME", "Pulseboard"),
        "APP_SLUG": slug,
        "APP_DOMAIN": domain,
        "PORT": port,
        "PUBLIC_ORIGINS": origins,
        # Links in mail and OAuth redirect URIs are built on this, never on the request's Host.
        "PUBLIC_URL": public_url,
        "TRUSTED_HOSTS": _trusted_hosts(read, public_url, origins, domain, bind),
        "PROXY_FIX_HOPS": hops,
        # Only these peers may tell us the client's address and scheme (proxies.py).
        "TRUSTED_PROXIES": _trusted_proxies(read, bind, hops),
        # The address gunicorn listens on (gunicorn.conf.py reads the same variable).
        "WEB_BIND_ADDRESS": bind,
        "MAX_CONTENT_LENGTH": read.int("MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024),
        # JSON lines (one object per line) for log collectors; text is easier to read by eye.
        "LOG_JSON": read.bool("LOG_JSON", production),
        "LOG_LEVEL": read.choice(
            "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"
        ).upper(),
        # Database
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(read, database_url),
        "DB_CHECK_TIMEOUT": read.float("DB_CHECK_TIMEOUT", 2.0, minimum=0.1),
        # Message bus
        "BROKER_URL": broker_url,
        "BROKER_CHECK_TIMEOUT": read.float("BROKER_CHECK_TIMEOUT", 2.0, minimum=0.1),
        "SOCKETIO_CHANNEL": f"{slug}.socketio",
        "EVENT_QUEUE_TYPE": _queue_type(read, broker_url),
        # Quorum queues only: deliveries of one message (the first and every redelivery
        # after the consumer failed holding it) before it is dead-lettered, not retried.
        "EVENT_DELIVERY_LIMIT": read.int("EVENT_DELIVERY_LIMIT", 20, minimum=1, maximum=1_000_000),
        "EVENT_SINGLE_ACTIVE_CONSUMER": read.bool("EVENT_SINGLE_ACTIVE_CONSUMER", False),
        "EVENT_MAX_BYTES": read.int("EVENT_MAX_BYTES", 64 * 1024, minimum=1024),
        # Nesting of a payload's objects and arrays: every JSON encoder on the way
        # to the browser recurses per level, so one deep event could stall delivery.
        "EVENT_MAX_DEPTH": read.int("EVENT_MAX_DEPTH", 32, minimum=1, maximum=256),
        "EVENT_RETENTION": _retention_age(read),
        "EVENT_RETENTION_COUNT": read.int("EVENT_RETENTION_COUNT", 1_000_000) or None,
        "PUBLISH_MAX_RETRIES": read.int("PUBLISH_MAX_RETRIES", 5, maximum=100),
        # Publishes in flight awaiting RabbitMQ's confirm; 1 waits for each in turn.
        "PUBLISH_CONFIRM_WINDOW": read.int(
            "PUBLISH_CONFIRM_WINDOW", 1000, minimum=1, maximum=100_000
        ),
        "CONSUMER_PREFETCH": read.int("CONSUMER_PREFETCH", 1000, minimum=1, maximum=65535),
        "CONSUMER_BATCH_SIZE": read.int("CONSUMER_BATCH_SIZE", 500, minimum=1),
        "CONSUMER_BATCH_WAIT_MS": read.int("CONSUMER_BATCH_WAIT_MS", 50, maximum=10_000),
        # While the database or broker is down: first and longest ceiling of the random wait.
        "CONSUMER_RETRY_BASE_MS": read.int("CONSUMER_RETRY_BASE_MS", 500, minimum=1),
        "CONSUMER_RETRY_MAX_MS": read.int("CONSUMER_RETRY_MAX_MS", 30_000, minimum=1),
        # Live streams (Socket.IO /stream)
        "STREAM_PUBLIC_TOPICS": read.list(
            "STREAM_PUBLIC_TOPICS", ("market.ticks", "system.metrics", "notices")
        ),
        "STREAM_ADMIN_TOPICS": read.list("STREAM_ADMIN_TOPICS", ("audit",)),
        "STREAM_MAX_TOPICS": read.int("STREAM_MAX_TOPICS", 32, minimum=1, maximum=1000),
        # Events per replay page: a backlog is sent whole, one page read and taken at a time.
        "STREAM_REPLAY_LIMIT": read.int("STREAM_REPLAY_LIMIT", 1000, minimum=1),
        "STREAM_MAX_MESSAGE_BYTES": read.int("STREAM_MAX_MESSAGE_BYTES", 16 * 1024, minimum=1024),
        # A socket with more than this waiting for it is dropped (it reconnects and replays).
        "STREAM_MAX_QUEUED_PACKETS": read.int("STREAM_MAX_QUEUED_PACKETS", 256, minimum=8),
        "STREAM_MAX_QUEUED_KB": read.int("STREAM_MAX_QUEUED_KB", 4096, minimum=64),
        # Seconds; Nginx's proxy_read_timeout must be longer than interval + timeout.
        "STREAM_PING_INTERVAL": read.int("STREAM_PING_INTERVAL", 25, minimum=1),
        "STREAM_PING_TIMEOUT": read.int("STREAM_PING_TIMEOUT", 20, minimum=1),
        # Seconds between checks that each socket's session and rights still hold: the
        # longest a socket outlives a sign-out whose disconnect message was lost.
        "STREAM_RIGHTS_CHECK_SECONDS": read.int("STREAM_RIGHTS_CHECK_SECONDS", 5, minimum=1),
        # Seconds between checks that this instance got every event of its sockets'
        # topics through the fan-out; what it missed is delivered from the log.
        "STREAM_REPAIR_SECONDS": read.int("STREAM_REPAIR_SECONDS", 2, minimum=1),
        # Sockets joining at once per process (connect to first subscribe answered);
        # a connect over it is refused with {retry: true}; the page retries it.
        "STREAM_JOIN_CONCURRENCY": read.int("STREAM_JOIN_CONCURRENCY", 100, minimum=1),
        # Seconds a join may hold its place (a client that connects and goes quiet).
        "STREAM_JOIN_TIMEOUT": read.int("STREAM_JOIN_TIMEOUT", 5, minimum=1),
        # Milliseconds ready work may wait for the event loop before new Engine.IO
        # handshakes are refused (429, retried by the client); 0: the join limit only.
        "STREAM_SHED_LAG_MS": read.int("STREAM_SHED_LAG_MS", 250, minimum=0),
        # permessage-deflate on WebSockets: CPU and a zlib context per connection.
        "STREAM_WS_COMPRESSION": read.bool("STREAM_WS_COMPRESSION", False),
        # Server-Sent Events (GET /api/v1/stream): seconds between ": ping" comments, and
        # the events that may wait for one client before its stream is closed.
        "SSE_HEARTBEAT_SECONDS": read.int("SSE_HEARTBEAT_SECONDS", 15, minimum=1),
        "SSE_MAX_QUEUED_EVENTS": read.int("SSE_MAX_QUEUED_EVENTS", 1000, minimum=10),
        # HTTP ingest
        "API_MAX_BATCH": read.int("API_MAX_BATCH", 500, minimum=1, maximum=10_000),
        "API_RATE_LIMIT": read.str("API_RATE_LIMIT", "1200/minute"),
        **_metrics_config(read),
        # Sessions (server-side, in the database)
        "SESSION_TYPE": "sqlalchemy",
        "SESSION_PERMANENT": True,
        "SESSION_USE_SIGNER": True,
        "PERMANENT_SESSION_LIFETIME": timedelta(minutes=idle_minutes),
        "SESSION_ABSOLUTE_LIFETIME": timedelta(hours=absolute_hours),
        "SESSION_COOKIE_NAME": "__Host-session" if secure_cookies else f"{slug}_session",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_PATH": "/",
        "REMEMBER_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # Rate limits: memory:// is per process; use redis:// when running several instances.
        "RATELIMIT_STORAGE_URI": read.str("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": read.bool("RATELIMIT_ENABLED", True),
        "WTF_CSRF_ENABLED": read.bool("WTF_CSRF_ENABLED", True),
        "WTF_CSRF_TIME_LIMIT": None,
        # Accounts
        "AUTH_PASSWORD_ENABLED": read.bool("AUTH_PASSWORD_ENABLED", True),
        "AUTH_EMAIL_VERIFICATION": read.bool("AUTH_EMAIL_VERIFICATION", True),
        # Changing email, password or linked accounts needs a sign-in this recent.
        "AUTH_FRESH_MINUTES": read.int("AUTH_FRESH_MINUTES", 10, minimum=1),
        "AUTH_LINK_HOURS": read.int("AUTH_LINK_HOURS", 24, minimum=1),
        "AUTH_RESET_MINUTES": read.int("AUTH_RESET_MINUTES", 30, minimum=1),
        "AUTH_RATE_LIMIT": read.str("AUTH_RATE_LIMIT", "10/minute;60/hour"),
        # Failed sign-ins per account, from any address. A short window: whoever
        # hammers an account can only keep its owner out for that long.
        "AUTH_ACCOUNT_RATE_LIMIT": _rate_limit(read, "AUTH_ACCOUNT_RATE_LIMIT", "10 per 5 minutes"),
        **load_oauth_config(read),
        **_mail_config(read, app_env),
        # Interface
        "UI_LAYOUT": read.choice("UI_LAYOUT", LAYOUTS, "both"),
        "UI_DEFAULT_THEME": read.choice("UI_DEFAULT_THEME", THEMES, "auto"),
        "WELCOME_ENABLED": read.bool("WELCOME_ENABLED", True),
        "DEMO_PAGES": demo_pages,
        "BRAND_PRIMARY_COLOR": color.lower(),
        "BRAND_LOGO_TEXT": read.str("BRAND_LOGO_TEXT", read.str("APP_NAME", "Pulseboard")),
        "CONTENT_SECURITY_POLICY": read.str(
            "CONTENT_SECURITY_POLICY", _content_security_policy(origins)
        ),
    }


def _public_url(read: _Reader, origins: tuple[str, ...]) -> str:
    url = (read.str("PUBLIC_URL") or origins[0]).rstrip("/")
    if not _ORIGIN.match(url):
        raise ConfigError(
            f"PUBLIC_URL must be the site's origin like https://pulse.example.com "
            f"(scheme and host, no path), not {url!r}"
        )
    return url


# Deploy scripts and Prometheus reach each instance directly on loopback by address.
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _trusted_hosts(
    read: _Reader, public_url: str, origins: tuple[str, ...], domain: str, bind: str
) -> tuple[str, ...]:
    """Host names the app answers to; any other Host (or X-Forwarded-Host) gets 400.

    Unset, they are the site's own names, so nothing built from the request can
    point at someone else's host."""
    hosts = read.list("TRUSTED_HOSTS") or (
        urlsplit(public_url).hostname,
        *(urlsplit(origin).hostname for origin in origins),
        domain,
    )
    # A web-only host is probed on the address it listens on (deploy scripts, Prometheus).
    probes = (*_LOOPBACK_HOSTS, bind)
    return tuple(dict.fromkeys(host.lower() for host in (*hosts, *probes)))


def _trusted_proxies(read: _Reader, bind: str, hops: int) -> tuple:
    """The peers whose X-Forwarded-* headers count: loopback unless told otherwise.

    A web instance listening on another address serves an Nginx on another
    host; with loopback alone trusted every client would look like that Nginx
    (one address for the rate limits of all), so that must be said explicitly.
    """
    specs = read.list("TRUSTED_PROXIES")
    if not specs and hops and not ipaddress.ip_address(bind).is_loopback:
        raise ConfigError(
            f"WEB_BIND_ADDRESS is {bind}, so Nginx reaches this instance from another host: "
            "set TRUSTED_PROXIES to that Nginx host's address (comma-separated for several)"
        )
    try:
        return networks(specs or ("127.0.0.1", "::1"))
    except ValueError as error:
        raise ConfigError(
            f"TRUSTED_PROXIES must list addresses or networks like 10.0.0.5 or 10.0.0.0/24: {error}"
        ) from None


def _bind_address(read: _Reader) -> str:
    address = read.str("WEB_BIND_ADDRESS", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ConfigError(
            f"WEB_BIND_ADDRESS must be an IP address of this host, like 10.0.0.5, not {address!r}"
        ) from None
    return address


def _rate_limit(read: _Reader, name: str, default: str) -> str:
    value = read.str(name, default)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate limit like '10 per 5 minutes' or '10/minute', not {value!r}"
        ) from None
    return value


def _content_security_policy(origins: tuple[str, ...]) -> str:
    """No inline script, nothing from elsewhere; deploy/render.py gives Nginx the same.

    Socket.IO's WebSocket may go to the site's own origins only: each is named
    with its WebSocket scheme, since not every browser counts ws:/wss: as 'self'."""
    sockets = dict.fromkeys(
        ("wss://" if origin.startswith("https://") else "ws://") + origin.split("://", 1)[1]
        for origin in origins
    )
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src 'self' {' '.join(sockets)}; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'; object-src 'none'"
    )


def _database_url(read: _Reader, app_env: str) -> str:
    url = read.str("DATABASE_URL")
    if url is None:
        if app_env == "production":
            raise ConfigError(
                "DATABASE_URL is not set. Use mysql+pymysql://USER:PASSWORD@HOST/DB "
                "or sqlite:////var/lib/pulseboard/pulseboard.db"
            )
        url = f"sqlite:///{PROJECT_ROOT / 'instance' / 'pulseboard.db'}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is malformed; expected mysql+pymysql://USER:PASSWORD@HOST/DB "
            "or sqlite:///PATH"
        ) from None
    if parsed.get_backend_name() not in ("mysql", "mariadb", "sqlite"):
        raise ConfigError(
            f"DATABASE_URL must point at MySQL (mysql+pymysql://) or SQLite (sqlite://), "
            f"not {parsed.get_backend_name()!r}"
        )
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        if parsed.get_driver_name() != "pymysql":
            raise ConfigError("DATABASE_URL must use the PyMySQL driver: mysql+pymysql://")
        if not parsed.database:
            raise ConfigError("DATABASE_URL names no database: mysql+pymysql://USER@HOST/DB")
        # utf8mb4 is the only MySQL charset that holds all of Unicode.
        if parsed.query.get("charset") != "utf8mb4":
            url = parsed.update_query_dict({"charset": "utf8mb4"}).render_as_string(
                hide_password=False
            )
    return url


def _broker_url(read: _Reader, app_env: str) -> str:
    url = read.str("BROKER_URL")
    if url is None:
        if app_env == "production":
            raise ConfigError(
                "BROKER_URL is not set. Use amqp://USER:PASSWORD@HOST:5672/VHOST (a cluster: "
                "its nodes' URLs separated by ';'), or filesystem:// for a single-host install "
                "with no RabbitMQ"
            )
        return "memory://"
    nodes = url.split(";")
    if len(nodes) > 1:
        for node in nodes:
            if not re.match(r"^(amqps?|pyamqp)://\S", node.strip()):
                raise ConfigError(
                    "BROKER_URL names several nodes, separated by ';': each must be "
                    f"amqp://USER:PASSWORD@HOST:5672/VHOST, not {_masked(node)!r}"
                )
        return ";".join(node.strip() for node in nodes)
    if not re.match(r"^(amqps?|pyamqp|memory|filesystem)://", url):
        raise ConfigError(
            "BROKER_URL must start with amqp://, amqps://, filesystem:// or memory://, "
            f"not {_masked(url)!r}"
        )
    if url.startswith("filesystem://") and not re.match(r"^filesystem://(/.*)?$", url):
        raise ConfigError(
            "BROKER_URL=filesystem:// takes an absolute folder, filesystem:///var/lib/NAME/bus, "
            f"or none (the instance folder's bus/), not {url!r}"
        )
    return url


def _masked(url: str) -> str:
    """``url`` with the password of ``USER:PASSWORD@`` replaced by ``**``."""
    return re.sub(r"^([^:/]+://[^:@/]*:)[^@/]*@", r"\1**@", url.strip())


def _queue_type(read: _Reader, broker_url: str) -> str:
    """Quorum queues by default on a cluster (several nodes in BROKER_URL): a classic
    queue lives on one node and is gone while that node is."""
    default = "quorum" if ";" in broker_url else "classic"
    return read.choice("EVENT_QUEUE_TYPE", ("classic", "quorum"), default)


def _mail_config(read: _Reader, app_env: str) -> dict:
    server = read.str("MAIL_SERVER")
    use_ssl = read.bool("MAIL_USE_SSL", False)
    return {
        # No server: mail is written to the log (development), never silently dropped.
        "MAIL_SERVER": server,
        "MAIL_PORT": read.int("MAIL_PORT", 465 if use_ssl else 587, minimum=1, maximum=65535),
        "MAIL_USE_TLS": read.bool("MAIL_USE_TLS", not use_ssl and app_env == "production"),
        "MAIL_USE_SSL": use_ssl,
        "MAIL_USERNAME": read.str("MAIL_USERNAME"),
        "MAIL_PASSWORD": read.str("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": read.str(
            "MAIL_DEFAULT_SENDER", f"no-reply@{read.str('APP_DOMAIN', 'localhost')}"
        ),
        "MAIL_TIMEOUT": read.float("MAIL_TIMEOUT", 10.0, minimum=1.0),
    }


def _metrics_config(read: _Reader) -> dict:
    networks = read.list("METRICS_ALLOWED_NETWORKS", ("127.0.0.1/32", "::1/128"))
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"METRICS_ALLOWED_NETWORKS must list networks like 10.0.0.0/8, not {network!r}"
            ) from None
    token = read.str("METRICS_TOKEN")
    if token is not None and len(token) < 24:
        raise ConfigError("METRICS_TOKEN must be a random value of at least 24 characters")
    directory = read.str("PROMETHEUS_MULTIPROC_DIR")
    if directory is not None and not (os.path.isdir(directory) and os.access(directory, os.W_OK)):
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR must be an existing folder this user can write, "
            f"not {directory!r}"
        )
    return {
        # Who may read /metrics: these networks, or a request bearing the token.
        "METRICS_ALLOWED_NETWORKS": networks,
        "METRICS_TOKEN": token,
        # Web instances on one host share their metrics through files in this folder.
        "PROMETHEUS_MULTIPROC_DIR": directory,
        # The consumer's own metrics on 127.0.0.1:<port>; 0 turns them off.
        "CONSUMER_METRICS_PORT": read.int("CONSUMER_METRICS_PORT", 0, maximum=65535),
    }


def _retention_age(read: _Reader) -> timedelta | None:
    days = read.float("EVENT_RETENTION_DAYS", 7.0)
    return timedelta(days=days) if days else None


def _engine_options(read: _Reader, database_url: str) -> dict:
    if make_url(database_url).get_backend_name() == "sqlite":
        # One file, one writer: a busy timeout makes writers queue instead of failing.
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    return {
        "pool_pre_ping": True,
        # Recycle before MySQL's wait_timeout or a proxy drops idle connections.
        "pool_recycle": read.int("DB_POOL_RECYCLE", 280, minimum=30),
        # Connections are opened as needed and kept: an overflow connection is closed
        # on return, and reopening it per request (TLS context and all) cost a reconnect
        # storm a fifth of the worker's CPU (bench/storm.py).
        "pool_size": read.int("DB_POOL_SIZE", 30, minimum=1),
        "max_overflow": read.int("DB_MAX_OVERFLOW", 0),
        "pool_timeout": read.int("DB_POOL_TIMEOUT", 10, minimum=1),
        "connect_args": _connect_args(read, database_url),
    }


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _connect_args(read: _Reader, database_url: str) -> dict:
    args: dict = {"connect_timeout": read.int("DB_CONNECT_TIMEOUT", 5, minimum=1)}
    url = make_url(database_url)
    if url.host in LOOPBACK_HOSTS and not any(name.startswith("ssl") for name in url.query):
        # PyMySQL builds a TLS context (the whole CA bundle) for every new connection,
        # even to a server without TLS; on loopback the traffic never leaves the host,
        # and that cost was a third of a restarted worker's CPU while its pool filled
        # (bench/storm.py). An URL with ssl_* options keeps TLS as asked.
        args["ssl_disabled"] = True
    return args
