"""The install scripts on a stand-in system, as an operator meets them on day one.

The commands that would change this machine (apt-get, systemctl, rabbitmqctl,
useradd …) are stubs that record their arguments, so a test sees exactly what a
script asks of the system, and what it never passes on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import service_missing
from .deploy_site import DEPLOY, SETUP, deploy_settings, load_render

SCRIPTS = DEPLOY / "scripts"
BROKER_PASSWORD = "Rabbit-Pw_7f3a9c"
RECORD = 'printf "%s\\n" "${0##*/} $*" >>"$STUB_LOG"\n'
STUBS = {
    "apt-get": "",
    # Installed: the packages in INSTALLED_PACKAGES (none by default).
    "dpkg-query": """for package in ${INSTALLED_PACKAGES:-}; do
  [[ $package == "${@: -1}" ]] && echo 'install ok installed'
done
exit 0
""",
    "add-apt-repository": "",
    "useradd": "",
    "install": "",
    "chown": "",
    "chmod": "",
    "systemctl": "",
    "nginx": "",
    "curl": "",  # every instance answers /healthz
    "mysql": 'cat >>"$STUB_DIR/mysql.stdin"\n',
    "rabbitmqctl": """case $1 in
  version) echo 3.10.8 ;;
  list_users) for user in ${RABBITMQ_USERS:-}; do printf '%s\\t[]\\n' "$user"; done ;;
  add_user | change_password) cat >>"$STUB_DIR/rabbitmqctl.stdin" ;;
esac
""",
}


class StandIn:
    """deploy.conf and .env for an install in a folder any user may enter, and a PATH
    whose system-changing commands only record what they were asked."""

    def __init__(self, root: Path):
        self.root = root
        self.stubs = root / "stubs"
        self.stubs.mkdir()
        self.env_file = root / ".env"
        self.env_file.write_text(
            "APP_ENV=production\nDATABASE_URL=sqlite:////var/lib/pulseboard/pulseboard.db\n"
            f"BROKER_URL=amqp://pulseboard:{BROKER_PASSWORD}@127.0.0.1:5672/pulseboard\n"
        )
        self.conf = root / "build" / "deploy.conf"
        self.conf.parent.mkdir()
        self.os_release = root / "os-release"
        self.running("debian", "12")
        self.configure()
        for name, body in STUBS.items():
            self.stub(name, body)
        # The real python3, its command line recorded.
        real_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
        self.stub("python3", f'exec {real_python} "$@"\n')

    def stub(self, name: str, body: str) -> None:
        path = self.stubs / name
        path.write_text("#!/bin/bash\n" + RECORD + body)
        path.chmod(0o755)

    def configure(self, **settings: str) -> None:
        defaults = {"DEPLOY_USER": "pb-standin", "OS_TARGET": "debian-12", "DB_ENGINE": "sqlite"}
        values = deploy_settings(ENV_FILE=str(self.env_file), **{**defaults, **settings})
        self.conf.write_text(load_render().conf_text(values))

    def running(self, system: str, version: str) -> None:
        self.os_release.write_text(f'ID={system}\nVERSION_ID="{version}"\n')

    def run(self, command: list[str], **env: str) -> subprocess.CompletedProcess:
        environment = {
            "PATH": f"{self.stubs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "STUB_LOG": str(self.root / "calls.log"),
            "STUB_DIR": str(self.root),
            "DEPLOY_CONF": str(self.conf),
            "OS_RELEASE": str(self.os_release),
            **env,
        }
        return subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=60, check=False
        )

    def script(self, name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return self.run(["bash", str(SCRIPTS / name), *args], **env)

    def calls(self, command: str | None = None) -> list[str]:
        log = self.root / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [line for line in lines if command is None or line.split(" ", 1)[0] == command]


@pytest.fixture
def system():
    if os.geteuid() != 0:
        service_missing("root (the deploy scripts change the system)", "this user")
    root = Path(tempfile.mkdtemp())
    root.chmod(0o755)  # the service user passes through it to .env
    yield StandIn(root)
    shutil.rmtree(root)


# --- Secrets stay off command lines -----------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "command"), [("", "add_user"), ("pulseboard", "change_password")]
)
def test_provision_gives_rabbitmq_the_password_on_stdin_never_on_a_command_line(
    system, existing, command
):
    result = system.script("provision.sh", RABBITMQ_USERS=existing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rabbitmqctl {command} pulseboard" in system.calls()
    assert (system.root / "rabbitmqctl.stdin").read_text() == BROKER_PASSWORD + "\n"
    # Nothing the script ran, python3 included, had the password among its arguments.
    assert system.calls("python3")
    assert not [call for call in system.calls() if BROKER_PASSWORD in call]


def test_provision_makes_the_user_of_a_cluster_url_once_from_its_first_node(system):
    nodes = [f"amqp://pulseboard:{BROKER_PASSWORD}@{host}:5672/pulseboard" for host in
             ("127.0.0.1", "10.0.0.2", "10.0.0.3")]  # fmt: skip
    env = system.env_file.read_text().replace(nodes[0], ";".join(nodes))
    system.env_file.write_text(env)
    result = system.script("provision.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RabbitMQ: vhost pulseboard, user pulseboard" in result.stdout
    assert system.calls("rabbitmqctl").count("rabbitmqctl add_user pulseboard") == 1
    assert (system.root / "rabbitmqctl.stdin").read_text() == BROKER_PASSWORD + "\n"


# --- Several hosts (RUNBOOK.md, Several hosts) -------------------------------------------------

DB_PASSWORD = "Db-Pw_51c2e8"


def mysql_env(system, host: str) -> None:
    url = f"mysql+pymysql://pulseboard:{DB_PASSWORD}@{host}:3306/pulseboard?charset=utf8mb4"
    system.env_file.write_text(system.env_file.read_text() + f"DATABASE_URL={url}\n")


def test_provision_lets_the_private_network_in_to_the_first_hosts_database(system):
    mysql_env(system, "127.0.0.1")
    system.configure(DB_ENGINE="mysql", PRIVATE_NETWORK="10.0.0.0/24")
    conf_dir = system.root / "mysql-conf.d"
    result = system.script("provision.sh", MYSQL_CONF_DIR=str(conf_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    sql = (system.root / "mysql.stdin").read_text()
    for host in ("127.0.0.1", "localhost", "10.0.0.0/255.255.255.0"):
        assert f"TO 'pulseboard'@'{host}';" in sql
    assert "bind-address = 0.0.0.0" in (conf_dir / "60-pulseboard-network.cnf").read_text()
    assert "systemctl restart mariadb" in system.calls()
    assert not [call for call in system.calls() if DB_PASSWORD in call]


def test_a_web_host_installs_and_provisions_no_server_of_its_own(system):
    mysql_env(system, "10.0.0.11")
    env = system.env_file.read_text().replace("@127.0.0.1:5672", "@10.0.0.11:5672")
    system.env_file.write_text(env)
    system.configure(DB_ENGINE="mysql", HOST_ROLE="web")
    result = system.script("install-deps.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    packages = set(installed_packages(system))
    assert {"python3.11", "python3.11-venv", "curl"} <= packages
    assert not packages & {"nginx", "certbot", "mariadb-server", "rabbitmq-server"}
    assert not [call for call in system.calls("systemctl") if "enable" in call]
    result = system.script("provision.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MySQL on 10.0.0.11: provisioned by the all-in-one host" in result.stdout
    assert "RabbitMQ on 10.0.0.11: provisioned by the all-in-one host" in result.stdout
    assert system.calls("mysql") == [] and system.calls("rabbitmqctl") == []


# --- Ubuntu and Debian, the answer checked against the system ---------------------------------


def installed_packages(system: StandIn) -> list[str]:
    [install] = [
        call for call in system.calls("apt-get") if " install -y -qq ca-certificates" in call
    ]
    return install.split()[4:]


def test_install_deps_on_debian_12_installs_mariadb_from_debian_itself(system):
    system.configure(DB_ENGINE="mysql")
    result = system.script("install-deps.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    packages = installed_packages(system)
    assert {"mariadb-server", "python3.11", "python3.11-venv", "jq", "rabbitmq-server"} <= set(
        packages
    )
    assert "mysql-server" not in packages
    assert system.calls("add-apt-repository") == []
    assert "systemctl enable --now nginx rabbitmq-server mariadb" in system.calls()


def test_install_deps_on_ubuntu_installs_mysql_and_python_from_deadsnakes(system):
    system.running("ubuntu", "24.04")
    system.configure(OS_TARGET="ubuntu-24.04", DB_ENGINE="mysql", PYTHON="python3.99")
    result = system.script("install-deps.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert system.calls("add-apt-repository") == ["add-apt-repository -y ppa:deadsnakes/ppa"]
    assert {"mysql-server", "python3.99-venv", "jq"} <= set(installed_packages(system))
    assert "systemctl enable --now nginx rabbitmq-server mysql" in system.calls()


def test_install_deps_runs_no_apt_when_every_package_is_there(system):
    packages = "ca-certificates curl jq git openssl nginx certbot python3 sqlite3"
    packages += " python3.11 python3.11-venv rabbitmq-server mariadb-server"
    system.configure(DB_ENGINE="mysql")
    result = system.script("install-deps.sh", INSTALLED_PACKAGES=packages)
    assert result.returncode == 0, result.stdout + result.stderr
    assert system.calls("apt-get") == []
    assert "already installed" in result.stdout
    # One missing: apt installs that one only.
    result = system.script("install-deps.sh", INSTALLED_PACKAGES=packages.replace(" jq", ""))
    assert system.calls("apt-get")[-1] == "apt-get install -y -qq jq"


@pytest.mark.parametrize(("system_id", "version"), [("debian", "12"), ("ubuntu", "20.04")])
def test_install_deps_refuses_a_system_other_than_the_answer(system, system_id, version):
    system.running(system_id, version)
    system.configure(OS_TARGET="ubuntu-24.04")
    result = system.script("install-deps.sh")
    assert result.returncode == 1
    assert f"this system is {system_id}-{version}" in result.stderr
    assert system.calls() == []


# --- A checkout the service user cannot reach -------------------------------------------------


@pytest.mark.parametrize("user", ["pb-standin", "nobody"], ids=["user-not-yet-made", "user-exists"])
@pytest.mark.parametrize("script", ["install-deps.sh", "install-app.sh"])
def test_a_checkout_in_a_closed_home_folder_is_refused_before_anything_changes(
    system, user, script
):
    home = system.root / "home" / "alice"
    checkout = home / "pulseboard"
    checkout.mkdir(parents=True)
    home.chmod(0o750)  # what useradd gives a home folder
    system.configure(DEPLOY_USER=user, APP_DIR=str(checkout), VENV_DIR=str(checkout / ".venv"))
    result = system.script(script)
    assert result.returncode == 1
    assert f"the service user {user} may not enter {home} (mode 750)" in result.stderr
    assert "chmod o+x" in result.stderr and "migrations" not in result.stderr
    assert system.calls() == []


# --- restart.sh ------------------------------------------------------------------------------


def test_restart_refuses_a_port_that_is_not_one_of_the_instances(system):
    result = system.script("restart.sh", "9999")
    assert result.returncode == 1
    assert "no web instance on port 9999: the instances are on 8000 8001" in result.stderr
    assert system.calls("systemctl") == []


def test_restart_all_leaves_the_target_active(system):
    result = system.script("restart.sh", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemctl start pulseboard.target" in system.calls()


def test_a_restart_shows_no_refused_connection_while_the_instance_starts(system):
    # Refused twice, as while gunicorn starts, then healthy.
    system.stub(
        "curl",
        'n=$(cat "$STUB_DIR/curl.count" 2>/dev/null || echo 0)\n'
        'echo $((n + 1)) >"$STUB_DIR/curl.count"\n'
        '((n >= 2)) || { echo "curl: (7) Failed to connect to 127.0.0.1" >&2; exit 7; }\n',
    )
    result = system.script("restart.sh", "8000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(system.calls("curl")) == 3
    assert "curl: (7)" not in result.stdout + result.stderr


def test_an_instance_that_never_answers_shows_the_last_failure(system):
    system.stub("curl", 'echo "curl: (7) Failed to connect to 127.0.0.1" >&2; exit 7\n')
    result = system.run(["bash", "-c", f"source {SCRIPTS / 'common.sh'}; wait_healthy 8000 1"])
    assert result.returncode == 1
    assert result.stderr.count("curl: (7)") == 1


# --- setup.sh when Let's Encrypt fails ---------------------------------------------------------


def test_setup_starts_the_site_when_certbot_fails_and_says_what_to_do(system):
    """DNS not pointing here yet, likely on a first install: the site still starts."""
    checkout = system.root / "checkout"
    shutil.copytree(DEPLOY, checkout / "deploy", ignore=shutil.ignore_patterns("build"))
    shutil.copy(SETUP, checkout / "setup.sh")
    steps = [*(checkout / "deploy" / "scripts").glob("*.sh"), checkout / "deploy" / "verify.sh"]
    for step in steps:
        step.write_text("#!/bin/bash\n" + RECORD)
    certificate = checkout / "deploy" / "scripts" / "tls-certificate.sh"
    certificate.write_text(certificate.read_text() + "[[ ${1:-} == --bootstrap ]] || exit 1\n")
    answers = system.root / "answers"
    answers.write_text("APP_DOMAIN=board.example.com\nTLS_MODE=letsencrypt\nOS_TARGET=debian-12\n")
    result = system.run(["bash", str(checkout / "setup.sh"), "--answers", str(answers)])
    assert result.returncode == 1
    ran = system.calls()
    assert ran.index("tls-certificate.sh ") < ran.index("restart.sh all")
    assert "verify.sh --cacert /etc/ssl/pulseboard/fullchain.pem https://board.example.com" in ran
    assert "Once DNS for board.example.com points here" in result.stderr
    assert "run: sudo deploy/scripts/tls-certificate.sh" in result.stderr
