"""setup.sh's wizard and the assets it renders: .env, systemd units, the Nginx site, scripts."""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dotenv import dotenv_values

from pulseboard.config import load_config

from .conftest import service_missing
from .deploy_site import (
    DEPLOY,
    SETUP,
    VENV,
    VERIFY,
    deploy_settings,
    load_render,
    nginx_test,
    render_site,
    run_setup,
    tool,
)
from .servers import PROJECT_ROOT, base_env, free_port, stop, wait_until_healthy

SCRIPTS = sorted((DEPLOY / "scripts").glob("*.sh"))
# Piped answers, one line per question in setup.sh's order; empty lines take the default.
PIPED = [
    "Ops Board",  # display name
    "",  # slug: derived from the name (ops-board)
    "board.example.com",
    "ubuntu-22.04",
    "opsboard",  # deploy user
    "9000",
    "3",  # web instances
    "github",
    "gh-client-id",
    "gh-client-secret",
    "yes",  # email + password
    "no",  # verification
    "",  # mail server: none
    "sqlite",
    "rabbitmq",
    "",  # delivery
    "sidebar",
    "dark",
    "no",  # welcome page
    "dashboard,live-stream",
    "yes",  # demo producer
    "#0A7B83",
    "Ops",
    "letsencrypt",
    "ops@example.com",
]


@pytest.fixture
def target(tmp_path):
    """Where a test's setup run writes: its own .env and asset directory."""
    return {"env": tmp_path / ".env", "out": tmp_path / "build", "tmp": tmp_path}


def setup(target, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return run_setup(
        "--render-only", "--env-file", str(target["env"]), "--output", str(target["out"]),
        *args, input=input,
    )  # fmt: skip


def snapshot(target) -> dict[Path, tuple[bytes, int]]:
    files = [target["env"], *sorted(p for p in target["out"].rglob("*") if p.is_file())]
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files}


def test_piped_answers_write_a_private_env_the_app_accepts(target):
    result = setup(target, input="\n".join(PIPED) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(target["env"].stat().st_mode) == 0o600
    env = dotenv_values(target["env"])
    assert len(env["SECRET_KEY"]) >= 32
    assert env["APP_ENV"] == "production"
    assert env["APP_SLUG"] == "ops-board"
    assert env["PUBLIC_ORIGINS"] == "https://board.example.com"
    assert env["DATABASE_URL"] == "sqlite:////var/lib/ops-board/ops-board.db"
    assert env["BROKER_URL"].startswith("amqp://ops-board:")
    assert env["BROKER_URL"].endswith("@127.0.0.1:5672/ops-board")
    assert (env["AUTH_PASSWORD_ENABLED"], env["AUTH_EMAIL_VERIFICATION"]) == ("1", "0")
    assert (env["UI_LAYOUT"], env["UI_DEFAULT_THEME"], env["WELCOME_ENABLED"]) == (
        "sidebar",
        "dark",
        "0",
    )
    assert env["GITHUB_CLIENT_ID"] == "gh-client-id"
    config = load_config(env)  # the very file the services will read
    assert config["BRAND_PRIMARY_COLOR"] == "#0a7b83"
    assert config["DEMO_PAGES"] == ("dashboard", "live-stream")
    assert set(config["OAUTH_PROVIDERS"]) == {"github"}
    assert config["PROXY_FIX_HOPS"] == 1


def test_the_embedded_bus_lives_in_the_state_folder_so_the_demo_reaches_the_server(target):
    answers = list(PIPED)
    answers[answers.index("3")] = "1"  # the embedded bus serves one web instance
    answers[answers.index("rabbitmq")] = "memory"
    del answers[PIPED.index("#0A7B83") - 1]  # no demo producer question without RabbitMQ
    result = setup(target, input="\n".join(answers) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    env = dotenv_values(target["env"])
    assert env["BROKER_URL"] == "filesystem:///var/lib/ops-board/bus"
    load_config(env)  # the services accept it
    assert not (target["out"] / "systemd" / "ops-board-consumer.service").exists()
    assert (target["out"] / "systemd" / "ops-board-demo.service").exists()


def test_rendered_units_run_gunicorn_gevent_per_port_and_the_consumer(target):
    assert setup(target, input="\n".join(PIPED) + "\n").returncode == 0
    web = (target["out"] / "systemd" / "ops-board-web@.service").read_text()
    assert re.search(
        r"^ExecStart=\S+/bin/gunicorn --config \S+/gunicorn.conf.py --bind 127.0.0.1:%i "
        r"--workers 1 --worker-class gevent pulseboard.wsgi:app$",
        web,
        re.M,
    )
    for line in ("User=opsboard", f"EnvironmentFile={target['env']}", "Restart=on-failure",
                 "KillSignal=SIGTERM", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "CapabilityBoundingSet=", "StandardOutput=journal"):  # fmt: skip
        assert f"\n{line}\n" in web
    consumer = (target["out"] / "systemd" / "ops-board-consumer.service").read_text()
    assert re.search(r"^ExecStart=\S+/bin/pulseboard events consume$", consumer, re.M)
    demo = (target["out"] / "systemd" / "ops-board-demo.service").read_text()
    assert re.search(r"^ExecStart=\S+/bin/pulseboard events demo", demo, re.M)
    site = (target["out"] / "nginx" / "ops-board.conf").read_text()
    assert "server_name board.example.com;" in site
    upstream = (target["out"] / "nginx" / "ops-board-upstream.conf").read_text()
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", upstream) == ["9000", "9001", "9002"]
    assert "hash $remote_addr consistent;" in upstream


def test_setup_writes_the_public_url_and_the_one_trusted_host(target):
    assert setup(target, input="\n".join(PIPED) + "\n").returncode == 0
    first = dotenv_values(target["env"])
    assert first["PUBLIC_URL"] == "https://board.example.com"
    assert first["TRUSTED_HOSTS"] == "board.example.com"
    assert "board.example.com" in load_config(first)["TRUSTED_HOSTS"]
    again = setup(target, "--defaults")
    assert again.returncode == 0, again.stderr
    second = dotenv_values(target["env"])
    assert (second["PUBLIC_URL"], second["TRUSTED_HOSTS"]) == (
        "https://board.example.com",
        "board.example.com",
    )


def test_a_site_on_another_https_port_names_it_in_its_public_url(target):
    assert setup(target, "--defaults").returncode == 0
    conf = target["out"] / "deploy.conf"
    conf.write_text(conf.read_text() + "HTTPS_LISTEN=8443\n")  # set by hand, as RUNBOOK.md says
    assert setup(target, "--defaults").returncode == 0
    env = dotenv_values(target["env"])
    assert env["PUBLIC_URL"] == env["PUBLIC_ORIGINS"] == "https://localhost:8443"
    assert "HTTPS_LISTEN=8443" in conf.read_text()  # kept by the second run


def test_a_second_run_keeps_the_secret_and_changes_nothing(target):
    assert setup(target, "--defaults").returncode == 0
    before = snapshot(target)
    again = setup(target, "--defaults")
    assert again.returncode == 0, again.stderr
    assert snapshot(target) == before
    assert "unchanged" in again.stdout


def test_the_example_answers_file_is_accepted(target):
    result = setup(target, "--answers", str(DEPLOY / "answers.example"))
    assert result.returncode == 0, result.stderr
    config = load_config(dotenv_values(target["env"]))
    assert config["APP_DOMAIN"] == "app.example.com"
    assert set(config["OAUTH_PROVIDERS"]) == {"github"}
    assert config["MAIL_SERVER"] == "smtp.example.com"
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("mysql+pymysql://pulseboard:")


def test_a_changed_answer_changes_only_its_own_lines(target):
    assert setup(target, "--defaults").returncode == 0
    with target["env"].open("a") as env:
        env.write("LOG_LEVEL=debug\n")  # the operator's own setting
    before = target["env"].read_text().splitlines()
    answers = target["tmp"] / "answers"
    answers.write_text("BRAND_PRIMARY_COLOR=#123456\nWEB_INSTANCES=3\n")
    result = setup(target, "--answers", str(answers))
    assert result.returncode == 0, result.stderr
    after = target["env"].read_text().splitlines()
    assert [line for line in after if line not in before] == ["BRAND_PRIMARY_COLOR='#123456'"]
    assert [line for line in before if line not in after] == ["BRAND_PRIMARY_COLOR='#4f46e5'"]
    upstream = (target["out"] / "nginx" / "pulseboard-upstream.conf").read_text()
    assert upstream.count("server 127.0.0.1:") == 3


def test_an_invalid_answer_at_a_terminal_is_asked_again_with_the_reason(target):
    terminal, terminal_side = pty.openpty()
    with os.fdopen(terminal, "wb", buffering=0) as keyboard:
        # The rest of the questions take their defaults.
        keyboard.write(b"Board\nBad Slug\nboard\nnot_a_domain!\nboard.example.com\n" + b"\n" * 60)
        result = subprocess.run(
            ["bash", str(SETUP), "--render-only", "--env-file", str(target["env"]),
             "--output", str(target["out"])],
            stdin=terminal_side, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    os.close(terminal_side)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "invalid slug 'Bad Slug'" in result.stdout
    assert "invalid domain 'not_a_domain!'" in result.stdout
    assert dotenv_values(target["env"])["APP_SLUG"] == "board"


def test_an_invalid_piped_answer_stops_the_run_and_writes_nothing(target):
    """Asked again, each later line would answer the question before it."""
    answers = list(PIPED)
    answers[answers.index("ubuntu-22.04")] = "ubuntu-20.04"
    result = setup(target, input="\n".join(answers) + "\n")
    assert result.returncode == 2
    assert "OS_TARGET='ubuntu-20.04': unknown choice" in result.stderr
    assert not target["env"].exists()
    assert not target["out"].exists()


def test_an_invalid_piped_answer_on_a_second_run_changes_nothing(target):
    assert setup(target, "--defaults").returncode == 0
    before = snapshot(target)
    result = setup(target, input="Board\nBad Slug\nboard\n")
    assert result.returncode == 2
    assert snapshot(target) == before


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("APP_SLUG=Bad_Slug", "invalid slug 'Bad_Slug'"),
        ("APP_DOMAIN=exa mple.com", "invalid domain 'exa mple.com'"),
        ("BASE_PORT=80", "invalid port '80'"),
        ("BASE_PORT=5671", "ports 5671-5672 include 5672 (RabbitMQ)"),
        ("BASE_PORT=3300\nWEB_INSTANCES=8", "ports 3300-3307 include 3306 (MySQL/MariaDB)"),
        ("OS_TARGET=ubuntu-20.04", "unknown choice 'ubuntu-20.04'"),
        ("BRAND_PRIMARY_COLOR=blue", "invalid colour 'blue'"),
        ("DB_ENGINE=postgres", "unknown choice 'postgres'"),
        ("MQ=kafka", "unknown choice 'kafka'"),
        ("OAUTH_PROVIDERS=google,myspace", "unknown provider(s) myspace"),
        ("DEPLOY_USER=root", "must not run as root"),
        ("AUTH_PASSWORD_ENABLED=no", "the only way to sign in"),
        ("FAVOURITE_COLOUR=blue", "unknown answer key(s): FAVOURITE_COLOUR"),
    ],
)
def test_an_invalid_answer_in_a_file_stops_with_the_reason(target, answer, reason):
    answers = target["tmp"] / "answers"
    answers.write_text(answer + "\n")
    result = setup(target, "--answers", str(answers))
    assert result.returncode == 2
    assert reason in result.stderr
    assert not target["env"].exists()


@pytest.fixture
def shared_dir():
    """A directory any user may read: what an unprivileged user runs must be readable."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def test_setup_refuses_to_install_as_another_user_than_root(shared_dir):
    shutil.copy(SETUP, shared_dir / "setup.sh")
    result = as_nobody(["bash", str(shared_dir / "setup.sh"), "--defaults"])
    assert result.returncode == 1
    assert "run it as root" in result.stderr


def test_nginx_accepts_the_rendered_site(tmp_path):
    conf = render_site(tmp_path, [free_port(), free_port()], free_port(), free_port())
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "origins",
    ["https://board.example.com", "https://board.example.com:8443,http://127.0.0.1:8000"],
)
def test_nginx_sends_the_apps_own_content_security_policy(origins):
    env = {"APP_ENV": "production", "SECRET_KEY": "k" * 48, "BROKER_URL": "memory://",
           "DATABASE_URL": "sqlite:///app.db", "PUBLIC_ORIGINS": origins}  # fmt: skip
    app_default = load_config(env)["CONTENT_SECURITY_POLICY"]
    rendered = load_render().template_values(deploy_settings(), env)["CONTENT_SECURITY_POLICY"]
    assert rendered == app_default
    assert "'unsafe-inline'" not in app_default


def test_the_content_security_policy_lets_sockets_reach_the_site_only():
    """No bare ws:/wss: source: a page could otherwise send anything to any host."""
    render = load_render()
    settings = deploy_settings(APP_DOMAIN="board.example.com")
    policy = render.template_values(settings, {})["CONTENT_SECURITY_POLICY"]
    connect = re.search(r"connect-src ([^;]*)", policy).group(1).split()
    assert connect == ["'self'", "wss://board.example.com"]
    on_8443 = render.template_values({**settings, "HTTPS_LISTEN": "8443"}, {})
    assert "connect-src 'self' wss://board.example.com:8443;" in on_8443["CONTENT_SECURITY_POLICY"]


def test_the_socketio_body_cap_follows_the_apps_message_limit():
    render = load_render()
    default = render.template_values(deploy_settings(), {})["SOCKET_MAX_BODY_SIZE"]
    raised = render.template_values(deploy_settings(), {"STREAM_MAX_MESSAGE_BYTES": "65536"})
    limit = load_config({"APP_ENV": "test"})["STREAM_MAX_MESSAGE_BYTES"]
    assert limit < int(default) <= limit + 8192
    assert 65536 < int(raised["SOCKET_MAX_BODY_SIZE"]) <= 65536 + 8192


def test_a_drained_instance_stays_in_the_upstream_marked_down():
    """upgrade.sh drains an instance this way: Nginx sends it nothing while it
    restarts, and the hash moves its clients to the others."""
    settings = deploy_settings(WEB_INSTANCES="3", BASE_PORT="8000")
    servers = load_render().template_values({**settings, "WEB_DRAINED": "8001"}, {})
    assert servers["UPSTREAM_SERVERS"].splitlines() == [
        "    server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;",
        "    server 127.0.0.1:8001 max_fails=3 fail_timeout=10s down;",
        "    server 127.0.0.1:8002 max_fails=3 fail_timeout=10s;",
    ]
    every = load_render().template_values({**settings, "WEB_DRAINED": ""}, {})
    assert " down" not in every["UPSTREAM_SERVERS"]


def test_socket_read_timeout_outlasts_the_socketio_ping():
    values = load_render().template_values(deploy_settings(), {})
    config = load_config({"APP_ENV": "test"})
    ping = config["STREAM_PING_INTERVAL"] + config["STREAM_PING_TIMEOUT"]
    assert int(values["SOCKET_READ_TIMEOUT"].rstrip("s")) > ping


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """The rendered units, pointing at this checkout's virtualenv (their ExecStart exists)."""
    out = tmp_path_factory.mktemp("units")
    load_render().render_all(deploy_settings(DEMO_PRODUCER="yes"), {}, out)
    systemd = out / "systemd"
    # A template is checked through one of its instances.
    shutil.copy(systemd / "pulseboard-web@.service", systemd / "pulseboard-web@8000.service")
    assert (VENV / "bin" / "gunicorn").exists()
    return systemd


def test_systemd_accepts_the_rendered_units(units):
    files = [units / name for name in ("pulseboard-web@8000.service", "pulseboard-consumer.service",
                                       "pulseboard-demo.service", "pulseboard.target",
                                       "pulseboard-session-cleanup.service",
                                       "pulseboard-session-cleanup.timer")]  # fmt: skip
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", *map(str, files)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pulseboard" not in result.stderr, result.stderr


def unit_section(path: Path) -> dict[str, list[str]]:
    """A unit's [Unit] settings, each name with every value it is given."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Unit]" and "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            found.setdefault(name, []).extend(value.split())
    return found


@pytest.mark.parametrize(
    "unit",
    ["pulseboard-web@.service", "pulseboard-consumer.service", "pulseboard-demo.service",
     "pulseboard-session-cleanup.timer"],
)  # fmt: skip
def test_stopping_the_target_waits_for_each_of_its_units(units, unit):
    """Stop jobs run in the reverse of start order: a unit ordered after the target
    stops before it, so `systemctl stop pulseboard.target` returns once it has stopped."""
    settings = unit_section(units / unit)
    assert "pulseboard.target" in settings["PartOf"]
    assert "pulseboard.target" in settings["After"]
    assert "Before" not in unit_section(units / "pulseboard.target")


def test_expired_sessions_are_deleted_hourly_by_the_apps_own_command(units):
    service = (units / "pulseboard-session-cleanup.service").read_text()
    assert re.search(r"^ExecStart=\S+/bin/pulseboard session_cleanup$", service, re.M)
    timer = (units / "pulseboard-session-cleanup.timer").read_text()
    assert "\nOnCalendar=hourly\n" in timer and "\nWantedBy=pulseboard.target\n" in timer


def test_the_session_cleanup_command_exists(runner):
    assert "session_cleanup" in runner.invoke(args=["--help"]).output


@pytest.mark.parametrize(
    "unit",
    ["pulseboard-web@8000.service", "pulseboard-consumer.service", "pulseboard-demo.service",
     "pulseboard-session-cleanup.service"],
)  # fmt: skip
def test_units_are_hardened(units, unit):
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--threshold=15",
         str(units / unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 1.5
    assert result.returncode == 0


def test_the_web_units_command_serves_its_instance_port(units, tmp_path):
    """ExecStart exactly as rendered, %i filled in as systemd does, from WorkingDirectory."""
    unit = (units / "pulseboard-web@.service").read_text()
    port = free_port()
    command = [arg.replace("%i", str(port)) for arg in shlex.split(_unit_value(unit, "ExecStart"))]
    log = (tmp_path / "web.log").open("w+")
    process = subprocess.Popen(
        command,
        cwd=_unit_value(unit, "WorkingDirectory"),
        env=base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log, 30)
    finally:
        stop(process)
        log.close()
    assert "Using worker: gevent" in (tmp_path / "web.log").read_text()


def _unit_value(unit: str, key: str) -> str:
    return re.search(rf"^{key}=(.*)$", unit, re.M).group(1)


def test_every_script_is_shellcheck_clean():
    # The deployment's scripts, and the ones that set up a test run.
    scripts = [SETUP, VERIFY, *SCRIPTS, PROJECT_ROOT / "tests/prepare.sh", PROJECT_ROOT / ".ci/run"]
    result = subprocess.run(
        [tool("shellcheck"), "--external-sources", *map(str, scripts)],
        capture_output=True, text=True, timeout=120, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


# --- The deploy scripts refuse bad input and leave the install as it was --------------------


SHIMS = {
    # systemd is not running here: record what the scripts ask of it.
    # Units are inactive, unless SHIM_ACTIVE is set.
    "systemctl": 'echo "systemctl $*" >>"$SHIM_LOG"\n'
    'case $1 in is-active) [ -n "$SHIM_ACTIVE" ] && exit 0; exit 3 ;; esac\n',
    "curl": 'echo "$*" >>"$SHIM_LOG.curl"\n',  # every instance answers /healthz
    "reload-nginx": 'echo "nginx reload" >>"$SHIM_LOG"\n',
}


@pytest.fixture
def installed(tmp_path):
    """A rendered install with a test Nginx whose config dir stands in for /etc/nginx,
    and systemctl recorded instead of run."""
    if os.geteuid() != 0:
        service_missing("root (the deploy scripts change the system)", "this user")
    nginx_dir = tmp_path / "etc-nginx"
    env_file = tmp_path / ".env"
    env_file.write_text("APP_ENV=production\n")
    conf = render_site(
        tmp_path / "run", [], free_port(), free_port(),
        NGINX_INCLUDE_DIR=str(nginx_dir / "snippets"), ENV_FILE=str(env_file),
        WEB_PORTS="", BASE_PORT=str(free_port()), WEB_INSTANCES="1",
    )  # fmt: skip
    build = tmp_path / "run" / "assets"
    # The test Nginx reads every enabled site, as Debian's /etc/nginx/nginx.conf does.
    conf.write_text(
        conf.read_text().replace(
            str(build / "nginx" / "pulseboard.conf"), str(nginx_dir / "sites-enabled" / "*")
        )
    )
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text("#!/bin/sh\n" + body)
        (shims / name).chmod(0o755)
    env = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "SHIM_LOG": str(tmp_path / "calls.log"),
        "DEPLOY_CONF": str(build / "deploy.conf"),
        "NGINX_DIR": str(nginx_dir),
        "NGINX_CMD": f"{tool('nginx', '/usr/sbin/nginx')} -p {conf.parent} -c {conf}",
        "NGINX_RELOAD": str(shims / "reload-nginx"),
        "NGINX_BACKUP_DIR": str(tmp_path / "backup"),
    }
    return {"env": env, "build": build, "nginx_dir": nginx_dir, "tmp": tmp_path}


def calls(installed) -> list[str]:
    """What changed the system, in order (status queries left out)."""
    log = installed["tmp"] / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if " is-active " not in line]


def run_script(name: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEPLOY / "scripts" / name), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def as_nobody(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` as an unprivileged user (as it is: when the tests are not root)."""
    if os.geteuid() == 0:
        command = [tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd="/"
    )


def test_configure_nginx_installs_tests_and_reloads(installed):
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (installed["nginx_dir"] / "sites-enabled" / "pulseboard.conf").exists()
    assert calls(installed) == ["nginx reload"]


def test_configure_nginx_keeps_the_logs_from_other_users(installed):
    """The access log holds client addresses and (redacted) request lines: not for everyone."""
    logs = installed["tmp"] / "run"
    access, error = logs / "access.log", logs / "error.log"
    assert not access.exists()
    error.write_text("")
    error.chmod(0o644)  # as an earlier Nginx left it
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    for log in (access, error):
        assert stat.S_IMODE(log.stat().st_mode) == 0o640, log


def test_configure_nginx_rolls_back_when_nginx_t_fails(installed):
    assert run_script("configure-nginx.sh", installed["env"]).returncode == 0
    site = installed["nginx_dir"] / "sites-available" / "pulseboard.conf"
    working = site.read_text()
    rendered = installed["build"] / "nginx" / "pulseboard.conf"
    rendered.write_text(rendered.read_text().replace("server_tokens off;", "server_tokens maybe;"))
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 1
    assert "nginx -t refused the new configuration" in result.stderr
    assert site.read_text() == working
    assert calls(installed) == ["nginx reload"]  # the first run's, none since


def distribution_default_site(installed) -> tuple[Path, Path]:
    """Debian's stock site: enabled, and default_server on this site's HTTP port."""
    http_listen = load_render().read_conf(installed["build"] / "deploy.conf")["HTTP_LISTEN"]
    available = installed["nginx_dir"] / "sites-available" / "default"
    enabled = installed["nginx_dir"] / "sites-enabled" / "default"
    available.parent.mkdir(parents=True, exist_ok=True)
    enabled.parent.mkdir(parents=True, exist_ok=True)
    available.write_text(f"server {{ listen {http_listen} default_server; return 404; }}\n")
    enabled.symlink_to(available)
    return available, enabled


def test_configure_nginx_disables_the_distributions_default_site(installed):
    available, enabled = distribution_default_site(installed)
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert not enabled.is_symlink()
    assert available.exists()  # left in sites-available, for whoever wants it back
    assert calls(installed) == ["nginx reload"]


def test_configure_nginx_puts_the_default_site_back_when_nginx_t_fails(installed):
    available, enabled = distribution_default_site(installed)
    rendered = installed["build"] / "nginx" / "pulseboard.conf"
    rendered.write_text(rendered.read_text().replace("server_tokens off;", "server_tokens maybe;"))
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 1
    assert enabled.is_symlink() and enabled.resolve() == available
    assert calls(installed) == []


def test_scripts_stop_when_env_is_missing(installed):
    conf = Path(installed["env"]["DEPLOY_CONF"])
    conf.write_text(conf.read_text().replace(str(installed["tmp"] / ".env"), "/nonexistent/.env"))
    result = run_script("configure-nginx.sh", installed["env"])
    assert result.returncode == 1
    assert "/nonexistent/.env is missing: run ./setup.sh" in result.stderr
    assert not (installed["nginx_dir"] / "sites-available").exists()


def test_scripts_refuse_to_run_as_another_user(installed, shared_dir):
    # Scripts and settings anyone may read: the refusal must be about the user.
    shutil.copytree(DEPLOY / "scripts", shared_dir / "scripts")
    shutil.copytree(installed["build"], shared_dir / "build")
    (shared_dir / ".env").write_text("APP_ENV=production\n")
    conf = shared_dir / "build" / "deploy.conf"
    conf.write_text(load_render().conf_text(deploy_settings(ENV_FILE=str(shared_dir / ".env"))))
    result = as_nobody(
        ["bash", str(shared_dir / "scripts" / "configure-nginx.sh")],
        env={**installed["env"], "DEPLOY_CONF": str(conf)},
    )
    assert result.returncode == 1
    assert "run it as root" in result.stderr
    assert not (installed["nginx_dir"] / "sites-available").exists()


def test_scale_refuses_a_bad_count(installed):
    result = run_script("scale.sh", installed["env"], "17")
    assert result.returncode == 1
    assert "the number of web instances, 0 to 16" in result.stderr
    # None at all leaves Nginx nothing, unless it serves other hosts' instances.
    result = run_script("scale.sh", installed["env"], "0")
    assert result.returncode == 1
    assert "name other hosts' instances in WEB_UPSTREAMS first" in result.stderr


def test_scale_starts_instances_before_nginx_sends_them_traffic(installed):
    assert run_script("configure-nginx.sh", installed["env"]).returncode == 0
    base = int(load_render().read_conf(Path(installed["env"]["DEPLOY_CONF"]))["BASE_PORT"])
    result = run_script("scale.sh", installed["env"], "3")
    assert result.returncode == 0, result.stdout + result.stderr
    upstream = (installed["nginx_dir"] / "snippets" / "pulseboard-upstream.conf").read_text()
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", upstream) == [str(base + i) for i in range(3)]
    started = [f"systemctl enable --now pulseboard-web@{base + i}.service" for i in range(3)]
    assert calls(installed) == ["nginx reload", *started, "nginx reload"]


def test_scale_down_stops_instances_only_after_nginx_left_them(installed):
    assert run_script("scale.sh", installed["env"], "2").returncode == 0
    base = int(load_render().read_conf(Path(installed["env"]["DEPLOY_CONF"]))["BASE_PORT"])
    (installed["tmp"] / "calls.log").unlink()
    result = run_script("scale.sh", installed["env"], "1")
    assert result.returncode == 0, result.stdout + result.stderr
    upstream = (installed["nginx_dir"] / "snippets" / "pulseboard-upstream.conf").read_text()
    assert upstream.count("server 127.0.0.1:") == 1
    assert calls(installed)[-2:] == [
        "nginx reload",
        f"systemctl disable --now pulseboard-web@{base + 1}.service",
    ]


def test_configure_systemd_installs_checked_units_and_enables_this_install(installed):
    systemd_dir = installed["tmp"] / "systemd"
    systemd_dir.mkdir()
    env = {**installed["env"], "SYSTEMD_DIR": str(systemd_dir)}
    result = run_script("configure-systemd.sh", env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (systemd_dir / "pulseboard-web@.service").exists()
    base = int(load_render().read_conf(Path(env["DEPLOY_CONF"]))["BASE_PORT"])
    reload, target, units = calls(installed)[:3]
    assert (reload, target) == ("systemctl daemon-reload", "systemctl enable pulseboard.target")
    assert units.startswith("systemctl enable ")
    enabled = units.split()[2:]  # other timers may join the session cleanup's
    assert [unit for unit in enabled if "-web@" in unit] == [f"pulseboard-web@{base}.service"]
    assert {"pulseboard-consumer.service", "pulseboard-session-cleanup.timer"} <= set(enabled)


def test_restart_web_restarts_the_instances_one_by_one(installed):
    assert run_script("scale.sh", installed["env"], "2").returncode == 0
    base = int(load_render().read_conf(Path(installed["env"]["DEPLOY_CONF"]))["BASE_PORT"])
    (installed["tmp"] / "calls.log").unlink()
    result = run_script("restart.sh", installed["env"], "web")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(installed) == [
        f"systemctl restart pulseboard-web@{base}.service",
        f"systemctl restart pulseboard-web@{base + 1}.service",
    ]
    unknown = run_script("restart.sh", installed["env"], "everything")
    assert unknown.returncode == 1
    assert "unknown part 'everything'" in unknown.stderr


def as_role(installed, role: str, **env: str) -> None:
    """Turn the test install into a web or consumer host (RUNBOOK.md, Several hosts)."""
    conf = Path(installed["env"]["DEPLOY_CONF"])
    conf.write_text(conf.read_text() + f"HOST_ROLE={role}\n")
    env_file = Path(load_render().read_conf(conf)["ENV_FILE"])
    env_file.write_text(env_file.read_text() + "".join(f"{k}={v}\n" for k, v in env.items()))
    render = subprocess.run(
        [sys.executable, str(DEPLOY / "render.py"), "--conf", str(conf), "--out", str(conf.parent)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert render.returncode == 0, render.stderr


def test_a_web_host_runs_and_checks_its_web_instances_on_its_own_address(installed):
    as_role(installed, "web", WEB_BIND_ADDRESS="10.0.0.12", TRUSTED_PROXIES="10.0.0.11")
    base = int(load_render().read_conf(Path(installed["env"]["DEPLOY_CONF"]))["BASE_PORT"])
    systemd_dir = installed["tmp"] / "systemd"
    systemd_dir.mkdir()
    result = run_script(
        "configure-systemd.sh", {**installed["env"], "SYSTEMD_DIR": str(systemd_dir)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in systemd_dir.iterdir()) == [
        "pulseboard-web@.service", "pulseboard.target",
    ]  # fmt: skip
    assert "--bind 10.0.0.12:%i " in (systemd_dir / "pulseboard-web@.service").read_text()
    assert calls(installed)[2] == f"systemctl enable pulseboard-web@{base}.service"
    (installed["tmp"] / "calls.log").unlink()
    result = run_script("restart.sh", installed["env"], "all")
    assert result.returncode == 0, result.stdout + result.stderr
    # No consumer, demo or Nginx here: the first host has them.
    assert calls(installed) == [
        f"systemctl restart pulseboard-web@{base}.service",
        "systemctl start pulseboard.target",
    ]
    probes = (installed["tmp"] / "calls.log.curl").read_text()
    assert f"http://10.0.0.12:{base}/healthz" in probes and "127.0.0.1" not in probes
    refused = run_script("configure-nginx.sh", installed["env"])
    assert refused.returncode == 1
    assert "the site's Nginx runs on the all-in-one host" in refused.stderr
    scaled = run_script("scale.sh", installed["env"], "2")
    assert scaled.returncode == 0, scaled.stderr
    assert f"WEB_UPSTREAMS to 10.0.0.12:{base},10.0.0.12:{base + 1}" in scaled.stdout


def test_a_consumer_host_runs_the_consumer_alone(installed):
    as_role(installed, "consumer")
    systemd_dir = installed["tmp"] / "systemd"
    systemd_dir.mkdir()
    result = run_script(
        "configure-systemd.sh", {**installed["env"], "SYSTEMD_DIR": str(systemd_dir)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(installed)[2] == "systemctl enable pulseboard-consumer.service"
    (installed["tmp"] / "calls.log").unlink()
    result = run_script("restart.sh", {**installed["env"], "SHIM_ACTIVE": "1"}, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(installed) == [
        "systemctl restart pulseboard-consumer.service",
        "systemctl start pulseboard.target",
    ]
    refused = run_script("scale.sh", installed["env"], "2")
    assert refused.returncode == 1
    assert "this host runs no web instances" in refused.stderr


def test_the_wizard_offers_exactly_the_demo_pages_the_app_knows():
    """questions.py runs before the virtualenv exists, so it keeps its own copy of the list."""
    import importlib.util
    import sys

    from pulseboard.config import DEMO_PAGES

    sys.path.insert(0, str(PROJECT_ROOT / "deploy"))
    try:
        spec = importlib.util.spec_from_file_location(
            "deploy_questions", PROJECT_ROOT / "deploy" / "questions.py"
        )
        questions = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(questions)  # dataclasses look their module up there
    finally:
        sys.path.remove(str(PROJECT_ROOT / "deploy"))
        sys.modules.pop("deploy_questions", None)
    assert questions.DEMO_PAGES == DEMO_PAGES
