"""The app factory: configuration, extensions, blueprints, Socket.IO."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dotenv import load_dotenv
from flask import Flask

from .config import PROJECT_ROOT, load_config
from .database import configure_engine
from .events.confirms import check_confirm_callbacks
from .extensions import csrf, db, limiter, login_manager, migrate, socketio
from .proxies import TrustedProxyFix


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, with ``config`` overriding variables.

    Without ``config`` a ``.env`` in the project folder is read first (values
    already in the environment win); with it, only the environment and the
    given variables count, so tests never pick up a developer's ``.env``.
    """
    if config is None:
        load_dotenv(PROJECT_ROOT / ".env", override=False)
        env: Mapping[str, str] = os.environ
    else:
        env = {**os.environ, **config}
    settings = load_config(env)
    # Before anything is served: refuse a py-amqp whose confirms cannot be pipelined.
    check_confirm_callbacks()

    app = Flask(
        "pulseboard",
        static_folder=str(PROJECT_ROOT / "static"),
        template_folder=str(PROJECT_ROOT / "templates"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.update(settings)
    configure_logging(app)
    register_metrics(app)
    if app.config["PROXY_FIX_HOPS"]:
        app.wsgi_app = TrustedProxyFix(
            app.wsgi_app, app.config["TRUSTED_PROXIES"], app.config["PROXY_FIX_HOPS"]
        )

    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_templating(app)
    return app


def configure_logging(app: Flask) -> None:
    from . import logs

    logs.configure(app)


def register_metrics(app: Flask) -> None:
    # Before the extensions: the request clock must start ahead of the rate limiter's
    # check, so a refused (429) request is counted too.
    from .metrics.web import init_app

    init_app(app)


def register_extensions(app: Flask) -> None:
    from .models import User
    from .sessions import DatabaseSessionInterface

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        # The SQLite file's folder must exist before the first connection.
        path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, production=app.config["APP_ENV"] == "production")
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    # No flash: it would store a session for every anonymous visit to a signed-in
    # page; the sign-in page says why from its `next` instead.
    login_manager.login_message = None
    login_manager.session_protection = None  # ids are server-side and renewed at login

    @login_manager.user_loader
    def load_user(user_id: str):
        user = db.session.get(User, int(user_id))
        # A disabled user's existing sessions stop working on their next request.
        return user if user is not None and not user.disabled else None

    limiter.init_app(app)
    csrf.init_app(app)
    init_socketio(app)
    app.session_interface = DatabaseSessionInterface(app)


def init_socketio(app: Flask) -> None:
    from .admin.notices import register as register_admin_namespace
    from .events.bus import is_embedded
    from .stream import wire
    from .stream.admission import HandshakeShedding, JoinGate, LoopLag
    from .stream.backpressure import QueueLimits
    from .stream.delivery import LocalStreamManager, QueueStreamManager
    from .stream.engine_route import SocketIORoute
    from .stream.guard import SessionBoundSockets
    from .stream.internals import check_internals
    from .stream.namespace import register as register_stream
    from .stream.polling_guard import PollingBodyGuard
    from .stream.repair import repair

    # Before anything is served: refuse to start on library versions the stream cannot use.
    check_internals()
    config = app.config
    if is_embedded(config["BROKER_URL"]):
        manager = LocalStreamManager()
    else:
        manager = QueueStreamManager(config["BROKER_URL"], channel=config["SOCKETIO_CHANNEL"])
    manager.limits = QueueLimits(
        packets=config["STREAM_MAX_QUEUED_PACKETS"], bytes=config["STREAM_MAX_QUEUED_KB"] * 1024
    )
    socketio.init_app(
        app,
        async_mode=async_mode(),
        client_manager=manager,
        cors_allowed_origins=list(config["PUBLIC_ORIGINS"]),
        manage_session=False,
        max_http_buffer_size=config["STREAM_MAX_MESSAGE_BYTES"],
        ping_interval=config["STREAM_PING_INTERVAL"],
        ping_timeout=config["STREAM_PING_TIMEOUT"],
    )
    wire.install(socketio.server.eio, compression=config["STREAM_WS_COMPRESSION"])
    repair.attach(app, socketio)
    # A reconnect storm is let in at the pace this process can serve; the rest retry.
    gate = JoinGate(config["STREAM_JOIN_CONCURRENCY"], config["STREAM_JOIN_TIMEOUT"])
    register_stream(socketio, gate)
    register_admin_namespace(socketio)
    app.wsgi_app = SocketIORoute(app.wsgi_app, socketio.server, app)
    app.wsgi_app = SessionBoundSockets(app.wsgi_app, config["SESSION_COOKIE_NAME"])
    # A body Engine.IO would choke on is refused before anything reads it.
    app.wsgi_app = PollingBodyGuard(app.wsgi_app, config["STREAM_MAX_MESSAGE_BYTES"])
    # Outermost: while the gate is full or the loop runs late, new handshakes are
    # refused before Engine.IO makes a session of them.
    app.wsgi_app = HandshakeShedding(
        app.wsgi_app, gate, LoopLag(), config["STREAM_SHED_LAG_MS"] / 1000, socketio.server
    )


def async_mode() -> str:
    """gevent when the process was monkey-patched (gunicorn, wsgi.py), else threads."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a hard dependency
        return "threading"
    return "gevent" if monkey.is_module_patched("socket") else "threading"


def register_blueprints(app: Flask) -> None:
    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .dashboards import bp as dashboards_bp
    from .main import bp as main_bp
    from .settings import bp as settings_bp
    from .stream import bp as stream_bp

    blueprints = (main_bp, auth_bp, settings_bp, stream_bp, dashboards_bp, admin_bp, api_bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    # Probes and the JSON API carry no session, so no form token either.
    csrf.exempt(api_bp)


def register_errorhandlers(app: Flask) -> None:
    from .errors import register

    register(app)


def register_commands(app: Flask) -> None:
    from .api.cli import tokens_cli
    from .cli import users_cli
    from .events.cli import events_cli

    for group in (users_cli, events_cli, tokens_cli):
        app.cli.add_command(group)


def register_templating(app: Flask) -> None:
    from .templating import register

    register(app)
