"""Database backups: the unit and timer that take them, backup.sh against the real
MariaDB and an SQLite file, the restore docs/BACKUP.md describes, and retention."""

from __future__ import annotations

import gzip
import os
import re
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pymysql
import pytest

from .conftest import PASSWORD, service_missing
from .deploy_site import DEPLOY, deploy_settings, load_render, tool
from .servers import PROJECT_ROOT, base_env, run_cli, temporary_database

BACKUP_SH = DEPLOY / "scripts" / "backup.sh"
DAY = 86400
# What the operator types, as docs/BACKUP.md gives it (from the checkout, as the service user).
RESTORE_COMMAND = "deploy/scripts/backup.sh --restore"


def render_units(out: Path, **settings: str) -> Path:
    load_render().render_all(deploy_settings(**settings), {}, out)
    return out / "systemd"


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    return render_units(tmp_path_factory.mktemp("units"))


def test_systemd_accepts_the_backup_service_and_its_timer(units):
    result = subprocess.run(
        [tool("systemd-analyze"), "verify",
         str(units / "pulseboard-backup.service"), str(units / "pulseboard-backup.timer")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pulseboard" not in result.stderr, result.stderr


def test_the_backup_service_is_hardened_like_the_app(units):
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--threshold=15",
         str(units / "pulseboard-backup.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 1.5


def test_the_backup_runs_nightly_with_the_app_and_catches_up_a_missed_run(units):
    timer = (units / "pulseboard-backup.timer").read_text()
    for line in ("OnCalendar=*-*-* 03:15:00", "Persistent=true", "PartOf=pulseboard.target",
                 "WantedBy=pulseboard.target"):  # fmt: skip
        assert f"\n{line}\n" in timer


def test_the_backup_service_keeps_the_database_password_out_of_its_environment(units):
    service = (units / "pulseboard-backup.service").read_text()
    assert "EnvironmentFile=" not in service
    assert f"\nEnvironment=ENV_FILE={PROJECT_ROOT / '.env'}\n" in service


def test_configure_systemd_installs_the_backup_units_and_enables_the_timer(tmp_path):
    if os.geteuid() != 0:
        service_missing("root (the deploy scripts change the system)", "this user")
    env_file = tmp_path / ".env"
    env_file.write_text("APP_ENV=production\n")
    render_units(tmp_path / "build", ENV_FILE=str(env_file))
    conf = tmp_path / "build" / "deploy.conf"
    conf.write_text(load_render().conf_text(deploy_settings(ENV_FILE=str(env_file))))
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >>"{tmp_path}/calls.log"\n')
    (shims / "systemctl").chmod(0o755)
    (tmp_path / "systemd").mkdir()

    result = subprocess.run(
        ["bash", str(DEPLOY / "scripts" / "configure-systemd.sh")],
        env={"PATH": f"{shims}:{os.environ['PATH']}", "DEPLOY_CONF": str(conf),
             "SYSTEMD_DIR": str(tmp_path / "systemd")},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    installed = {path.name for path in (tmp_path / "systemd").iterdir()}
    assert {"pulseboard-backup.service", "pulseboard-backup.timer"} <= installed
    enabled = [line for line in (tmp_path / "calls.log").read_text().splitlines()
               if line.startswith("systemctl enable ") and "-web@" in line]  # fmt: skip
    assert "pulseboard-backup.timer" in enabled[0].split()


# --- Running backup.sh as the unit runs it, and restoring as docs/BACKUP.md says --------------


@pytest.fixture
def install(tmp_path):
    """An install's paths in a temp folder: its .env, state folder (backups inside), the
    rendered units and deploy.conf, and a PATH whose MySQL clients record their arguments."""
    env_file = tmp_path / ".env"
    settings = {"ENV_FILE": str(env_file), "STATE_DIR": str(tmp_path / "state")}
    units = render_units(tmp_path / "build", **settings)
    conf = tmp_path / "build" / "deploy.conf"
    conf.write_text(load_render().conf_text(deploy_settings(**settings)))
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("mariadb-dump", "mysqldump", "mariadb", "mysql"):
        real = shutil.which(name)
        if real:
            (shims / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"{tmp_path}/argv.log"\n'
                                      f'exec {real} "$@"\n')  # fmt: skip
            (shims / name).chmod(0o755)
    (tmp_path / "tmp").mkdir()
    return {
        "root": tmp_path,
        "env_file": env_file,
        "unit": units / "pulseboard-backup.service",
        "conf": conf,
        "backups": tmp_path / "state" / "backups",
        "path": f"{shims}:/usr/local/bin:/usr/bin:/bin",
    }


def use_database(install, url: str) -> None:
    install["env_file"].write_text(f"APP_ENV=production\nDATABASE_URL={url}\n")


def run_backup_unit(install, **overrides: str) -> subprocess.CompletedProcess:
    """ExecStart of pulseboard-backup.service with its Environment= lines (``overrides``
    as a drop-in would set them), from its WorkingDirectory."""
    unit = install["unit"].read_text()
    env = dict(line.split("=", 1) for line in re.findall(r"^Environment=(.*)$", unit, re.M))
    command = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    return subprocess.run(
        command,
        env={**env, **overrides, "PATH": install["path"], "TMPDIR": str(install["root"] / "tmp")},
        cwd=re.search(r"^WorkingDirectory=(.*)$", unit, re.M).group(1),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def run_restore(install, backup: Path) -> subprocess.CompletedProcess:
    """The documented restore command, its settings from deploy.conf."""
    return subprocess.run(
        [*shlex.split(RESTORE_COMMAND), str(backup)],
        env={"PATH": install["path"], "DEPLOY_CONF": str(install["conf"]),
             "TMPDIR": str(install["root"] / "tmp")},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def backups(install, kind: str) -> list[Path]:
    return sorted(install["backups"].glob(f"pulseboard-*.{kind}.gz"))


def migrate_and_add_ann(url: str) -> dict[str, str]:
    env = base_env(DATABASE_URL=url)
    for command, stdin in [(("db", "upgrade"), None),
                           (("users", "create", "ann@example.com", "--password-stdin"),
                            PASSWORD + "\n")]:  # fmt: skip
        result = run_cli(*command, env=env, input=stdin)
        assert result.returncode == 0, result.stdout + result.stderr
    return env


@pytest.fixture
def mysql_app_url(mysql_server):
    """A database on the real server, reached as a user of its own whose password needs
    quoting in a MySQL option file; the URL the app's .env would hold."""
    server = urlsplit(mysql_server)
    address = f"{server.hostname}:{server.port or 3306}"

    def as_admin(sql: str, *args: str) -> None:
        admin = pymysql.connect(
            host=server.hostname, port=server.port or 3306,
            user=server.username or "root", password=unquote(server.password or ""),
        )  # fmt: skip
        with admin, admin.cursor() as cursor:
            cursor.execute(sql, args or None)

    with temporary_database(mysql_server, prefix="pb_bk") as root_url:
        name = urlsplit(root_url).path.strip("/")
        password = f"p#w {secrets.token_hex(6)}\\'q"
        hosts = ("127.0.0.1", "localhost")
        for host in hosts:
            as_admin(f"CREATE USER '{name}'@'{host}' IDENTIFIED BY %s", password)
            as_admin(f"GRANT ALL ON {name}.* TO '{name}'@'{host}'")
        try:
            yield f"mysql+pymysql://{name}:{quote(password, safe='')}@{address}/{name}"
        finally:
            for host in hosts:
                as_admin(f"DROP USER IF EXISTS '{name}'@'{host}'")


def mysql_query(url: str, sql: str) -> list[tuple]:
    parts = urlsplit(url)
    connection = pymysql.connect(
        host=parts.hostname, port=parts.port, user=parts.username,
        password=unquote(parts.password), database=parts.path.strip("/"), autocommit=True,
    )  # fmt: skip
    with connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def test_a_mysql_backup_restores_the_rows_and_the_schema_it_was_taken_with(install, mysql_app_url):
    use_database(install, mysql_app_url)
    env = migrate_and_add_ann(mysql_app_url)

    backed_up = run_backup_unit(install)
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    [backup] = backups(install, "mysql.sql")
    assert backup.stat().st_mode & 0o077 == 0  # holds password hashes: the owner's only

    mysql_query(mysql_app_url, "DELETE FROM users WHERE email = 'ann@example.com'")
    mysql_query(mysql_app_url, "UPDATE alembic_version SET version_num = 'later'")
    mysql_query(mysql_app_url, "CREATE TABLE from_a_later_release (id INT)")
    restored = run_restore(install, backup)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    migrated = run_cli("db", "upgrade", env=env)  # the next step the procedure gives
    assert migrated.returncode == 0, migrated.stderr

    assert mysql_query(mysql_app_url, "SELECT email FROM users") == [("ann@example.com",)]
    tables = {row[0] for row in mysql_query(mysql_app_url, "SHOW TABLES")}
    assert "from_a_later_release" not in tables and "users" in tables
    # What the database held before the restore was saved first, beside the backup.
    [before] = set(backups(install, "mysql.sql")) - {backup}
    assert f"what it held before is in {before}" in restored.stdout
    assert b"from_a_later_release" in gzip.decompress(before.read_bytes())


def test_the_mysql_password_is_never_on_a_command_line_nor_left_on_disk(install, mysql_app_url):
    use_database(install, mysql_app_url)
    migrate_and_add_ann(mysql_app_url)
    assert run_backup_unit(install).returncode == 0
    assert run_restore(install, backups(install, "mysql.sql")[0]).returncode == 0

    calls = (install["root"] / "argv.log").read_text().splitlines()
    assert len(calls) >= 4  # dump; then list, load and the saving dump of the restore
    password = unquote(urlsplit(mysql_app_url).password)
    assert not [call for call in calls if password in call or re.search(r" (--password|-p)", call)]
    assert all(call.split()[1].startswith("--defaults-extra-file=") for call in calls)
    assert list((install["root"] / "tmp").iterdir()) == []  # the option file went with its run


def test_a_failed_dump_leaves_no_file_and_removes_no_old_copy(install, mysql_server):
    use_database(install, f"{mysql_server}/pb_missing_{secrets.token_hex(4)}")
    old = install["backups"] / "pulseboard-20200101T000000Z.mysql.sql.gz"
    old.parent.mkdir(parents=True)
    old.write_bytes(gzip.compress(b"-- Dump completed\n"))
    os.utime(old, (time.time() - 400 * DAY,) * 2)

    result = run_backup_unit(install, BACKUP_KEEP_COPIES="1", BACKUP_KEEP_DAYS="1")

    assert result.returncode == 1
    assert "the copies in" in result.stderr and "are as they were" in result.stderr
    assert sorted(install["backups"].iterdir()) == [old]


@pytest.fixture
def sqlite_url(install):
    return f"sqlite:///{install['root'] / 'state' / 'pulseboard.db'}"


def sqlite_emails(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        return [row[0] for row in connection.execute("SELECT email FROM users")]


def test_an_sqlite_backup_restores_the_rows(install, sqlite_url):
    use_database(install, sqlite_url)
    env = migrate_and_add_ann(sqlite_url)

    backed_up = run_backup_unit(install)
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    [backup] = backups(install, "sqlite")
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        connection.execute("DELETE FROM users")
    assert sqlite_emails(sqlite_url) == []

    restored = run_restore(install, backup)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert run_cli("db", "upgrade", env=env).returncode == 0

    assert sqlite_emails(sqlite_url) == ["ann@example.com"]
    assert len(backups(install, "sqlite")) == 2  # and the emptied one, saved first


def make_sqlite_database(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (email TEXT)")
        connection.execute("INSERT INTO users VALUES ('ann@example.com')")


def test_a_damaged_backup_is_refused_and_the_database_left_alone(install, sqlite_url):
    use_database(install, sqlite_url)
    make_sqlite_database(sqlite_url)
    assert run_backup_unit(install).returncode == 0
    [backup] = backups(install, "sqlite")
    damaged = backup.with_name("pulseboard-20200101T000000Z.sqlite.gz")
    damaged.write_bytes(backup.read_bytes()[:-40])

    result = run_restore(install, damaged)

    assert result.returncode == 1
    assert f"{damaged} is damaged" in result.stderr
    assert sqlite_emails(sqlite_url) == ["ann@example.com"]
    assert backups(install, "sqlite") == [damaged, backup]  # nothing saved, nothing made


def test_a_restore_is_refused_while_the_app_runs(install, sqlite_url):
    use_database(install, sqlite_url)
    make_sqlite_database(sqlite_url)
    assert run_backup_unit(install).returncode == 0
    systemctl = install["root"] / "shims" / "systemctl"
    systemctl.write_text("#!/bin/sh\necho 'pulseboard-web@8000.service loaded active running'\n")
    systemctl.chmod(0o755)

    result = run_restore(install, backups(install, "sqlite")[0])

    assert result.returncode == 1
    assert "the app still runs (pulseboard-web@8000.service)" in result.stderr
    assert "systemctl stop pulseboard.target first" in result.stderr
    assert len(backups(install, "sqlite")) == 1  # not even the current database saved


@pytest.mark.parametrize(
    ("keep_days", "keep_copies", "left"),
    [
        ("14", "3", ["new", "1 day", "2 days"]),
        ("14", "5", ["new", "1 day", "2 days", "20 days", "30 days"]),  # the newest, however old
        ("25", "2", ["new", "1 day", "2 days", "20 days"]),  # younger than 25 days
    ],
)
def test_retention_keeps_the_newest_copies_and_the_recent_days(
    install, sqlite_url, keep_days, keep_copies, left
):
    use_database(install, sqlite_url)
    make_sqlite_database(sqlite_url)
    install["backups"].mkdir(parents=True)
    ages = {"1 day": 1, "2 days": 2, "20 days": 20, "30 days": 30, "40 days": 40}
    named = {}
    for label, days in ages.items():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - days * DAY))
        named[label] = install["backups"] / f"pulseboard-{stamp}.sqlite.gz"
        named[label].write_bytes(b"")
        os.utime(named[label], (time.time() - days * DAY,) * 2)
    # Not this script's: another install's copy and an operator's file stay, however old.
    others = [install["backups"] / "pulseboard-staging-20200101T000000Z.sqlite.gz",
              install["backups"] / "notes.txt"]  # fmt: skip
    for other in others:
        other.write_text("keep me")
        os.utime(other, (time.time() - 400 * DAY,) * 2)

    result = run_backup_unit(install, BACKUP_KEEP_DAYS=keep_days, BACKUP_KEEP_COPIES=keep_copies)

    assert result.returncode == 0, result.stdout + result.stderr
    [new] = set(install["backups"].iterdir()) - set(named.values()) - set(others)
    remaining = {label for label, path in named.items() if path.exists()}
    assert ["new", *sorted(remaining, key=ages.get)] == left
    assert new.name.startswith("pulseboard-") and all(other.exists() for other in others)


def test_the_documented_restore_is_the_one_tested():
    guide = (PROJECT_ROOT / "docs" / "BACKUP.md").read_text()
    assert RESTORE_COMMAND in guide
    assert "systemctl stop pulseboard.target" in guide
