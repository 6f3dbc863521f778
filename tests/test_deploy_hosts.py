"""Several hosts: setup.sh's host roles, the Nginx upstream across hosts, the shared .env.

The all-in-one host (HOST_ROLE=all) runs the site, the database, RabbitMQ and
every part, and its Nginx spreads clients over its own web instances and those
named in WEB_UPSTREAMS. A web host runs web instances only, on its private
address, for that Nginx alone; a consumer host runs the consumer only. Both
take the first host's .env (its SECRET_KEY and passwords) pointed at its address.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from dotenv import dotenv_values

from pulseboard.config import ConfigError, load_config

from .deploy_site import DEPLOY, nginx_test, render_site, run_setup

FRONT = "10.0.0.11"


@pytest.fixture
def target(tmp_path):
    return {"env": tmp_path / ".env", "out": tmp_path / "build", "tmp": tmp_path}


def setup(target, answers: dict[str, str]) -> subprocess.CompletedProcess:
    file = target["tmp"] / "answers"
    file.write_text("".join(f"{key}={value}\n" for key, value in answers.items()))
    return run_setup(
        "--render-only", "--env-file", str(target["env"]), "--output", str(target["out"]),
        "--answers", str(file),
    )  # fmt: skip


def rendered(target) -> list[str]:
    return sorted(
        str(p.relative_to(target["out"])) for p in target["out"].rglob("*.*") if p.is_file()
    )


@pytest.fixture
def first_host_env(tmp_path):
    """The .env setup.sh wrote on the all-in-one host, as an operator copies it over."""
    first = {
        "env": tmp_path / "first" / ".env",
        "out": tmp_path / "first" / "build",
        "tmp": tmp_path,
    }
    first["env"].parent.mkdir()
    result = setup(first, {"APP_DOMAIN": "board.example.com", "PRIVATE_NETWORK": "10.0.0.0/24",
                           "WEB_UPSTREAMS": "10.0.0.12:8000,10.0.0.12:8001"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return first


def copied(first, tmp_path, name: str) -> dict:
    host = {
        "env": tmp_path / name / ".env",
        "out": tmp_path / name / "build",
        "tmp": tmp_path / name,
    }
    host["env"].parent.mkdir()
    host["env"].write_bytes(first["env"].read_bytes())
    return host


def test_the_first_hosts_nginx_spans_its_own_instances_and_the_other_hosts(first_host_env):
    upstream = (first_host_env["out"] / "nginx" / "pulseboard-upstream.conf").read_text()
    servers = re.findall(r"^\s*server (\S+) max_fails=3 fail_timeout=10s;$", upstream, re.M)
    assert servers == ["127.0.0.1:8000", "127.0.0.1:8001", "10.0.0.12:8000", "10.0.0.12:8001"]
    # One sticky hash over all of them: a long-polling client keeps to one process anywhere.
    assert "hash $remote_addr consistent;" in upstream
    conf = (first_host_env["out"] / "deploy.conf").read_text()
    assert "PRIVATE_NETWORK=10.0.0.0/24" in conf and "HOST_ROLE=all" in conf


def test_an_nginx_host_may_serve_the_other_hosts_instances_only(target, tmp_path):
    answers = {"WEB_INSTANCES": "0", "WEB_UPSTREAMS": "10.0.0.12:8000,10.0.0.13:8000"}
    result = setup(target, answers)
    assert result.returncode == 0, result.stderr
    upstream = (target["out"] / "nginx" / "pulseboard-upstream.conf").read_text()
    assert re.findall(r"^\s*server (\S+)", upstream, re.M) == ["10.0.0.12:8000", "10.0.0.13:8000"]
    # With nobody to serve, the answer is refused.
    other = {"env": tmp_path / "other" / ".env", "out": tmp_path / "other" / "build"}
    other["tmp"] = other["env"].parent
    other["tmp"].mkdir()
    refused = setup(other, {"WEB_INSTANCES": "0"})
    assert refused.returncode == 2
    assert "name those of other hosts" in refused.stderr


def test_nginx_accepts_an_upstream_across_hosts(tmp_path):
    conf = render_site(
        tmp_path, [18000], 18080, 18443, WEB_UPSTREAMS="10.0.0.12:8000,[fd00::12]:8000"
    )
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr


def test_a_web_host_listens_on_its_address_for_the_first_hosts_nginx_only(first_host_env, tmp_path):
    web = copied(first_host_env, tmp_path, "web")
    result = setup(web, {"APP_DOMAIN": "board.example.com", "HOST_ROLE": "web",
                         "SERVICES_ADDRESS": FRONT, "WEB_BIND_ADDRESS": "10.0.0.12"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert rendered(web) == [
        "deploy.conf",
        "systemd/pulseboard-web@.service",
        "systemd/pulseboard.target",
    ]
    unit = (web["out"] / "systemd" / "pulseboard-web@.service").read_text()
    assert "--bind 10.0.0.12:%i " in unit
    first, env = dotenv_values(first_host_env["env"]), dotenv_values(web["env"])
    assert env["SECRET_KEY"] == first["SECRET_KEY"]
    assert env["DATABASE_URL"] == first["DATABASE_URL"].replace("@127.0.0.1:", f"@{FRONT}:")
    assert env["BROKER_URL"] == first["BROKER_URL"].replace("@127.0.0.1:", f"@{FRONT}:")
    assert (env["WEB_BIND_ADDRESS"], env["TRUSTED_PROXIES"]) == ("10.0.0.12", FRONT)
    config = load_config(env)
    assert [str(n) for n in config["TRUSTED_PROXIES"]] == [f"{FRONT}/32"]
    assert "10.0.0.12" in config["TRUSTED_HOSTS"]  # probed on its address
    # A second run keeps everything as it is.
    before = web["env"].read_bytes()
    again = run_setup("--render-only", "--env-file", str(web["env"]), "--output", str(web["out"]),
                      "--defaults")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert web["env"].read_bytes() == before


def test_a_consumer_host_runs_the_consumer_alone(first_host_env, tmp_path):
    consumer = copied(first_host_env, tmp_path, "consumer")
    result = setup(consumer, {"HOST_ROLE": "consumer", "SERVICES_ADDRESS": FRONT})
    assert result.returncode == 0, result.stderr
    assert rendered(consumer) == [
        "deploy.conf",
        "systemd/pulseboard-consumer.service",
        "systemd/pulseboard.target",
    ]
    env = dotenv_values(consumer["env"])
    assert "WEB_BIND_ADDRESS" not in env and f"@{FRONT}:5672/" in env["BROKER_URL"]


def test_a_further_host_without_the_first_hosts_env_is_refused_writing_nothing(target):
    result = setup(target, {"HOST_ROLE": "web", "SERVICES_ADDRESS": FRONT,
                            "WEB_BIND_ADDRESS": "10.0.0.12"})  # fmt: skip
    assert result.returncode == 2
    assert "copy the .env of the all-in-one host" in result.stderr
    assert not target["env"].exists() and not target["out"].exists()


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ({"HOST_ROLE": "web", "MQ": "memory", "WEB_INSTANCES": "1"}, "several hosts share"),
        ({"HOST_ROLE": "web", "DB_ENGINE": "sqlite"}, "several hosts share RabbitMQ and MySQL"),
        ({"HOST_ROLE": "proxy"}, "unknown choice 'proxy'"),
        ({"WEB_UPSTREAMS": "web2.internal"}, "address:port"),
        ({"PRIVATE_NETWORK": "10.0.0.0/33"}, "a CIDR network"),
        ({"HOST_ROLE": "web", "SERVICES_ADDRESS": "front"}, "an IP address"),
    ],
)
def test_bad_host_answers_are_refused_with_the_reason(target, answers, reason):
    result = setup(target, answers)
    assert result.returncode == 2
    assert reason in result.stderr
    assert not target["env"].exists()


def test_an_instance_on_a_private_address_must_be_told_which_proxy_to_believe():
    env = {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "DATABASE_URL": "sqlite://",
           "BROKER_URL": "memory://", "WEB_BIND_ADDRESS": "10.0.0.12"}  # fmt: skip
    with pytest.raises(ConfigError, match="set TRUSTED_PROXIES to that Nginx host's address"):
        load_config(env)
    assert [str(n) for n in load_config({**env, "TRUSTED_PROXIES": FRONT})["TRUSTED_PROXIES"]] == [
        f"{FRONT}/32"
    ]
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES must list addresses"):
        load_config({**env, "TRUSTED_PROXIES": "nginx-host"})


def test_the_scripts_know_each_role():
    common = (DEPLOY / "scripts" / "common.sh").read_text()
    for role in ("all", "web", "consumer"):
        assert role in re.search(r"HOST_ROLE =~ \^\((.*?)\)\$", common).group(1).split("|")
