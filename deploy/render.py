"""Render the deploy assets (systemd units, Nginx site) from ``deploy/templates``.

Standard library only: it runs with the system's python3 before the
virtualenv exists.  Templates hold ``{{NAME}}`` placeholders; Nginx's own
``$variables`` pass through untouched.  A placeholder without a value stops
the render with its name, so a half-filled file is never written.

Settings come from ``deploy.conf`` (written by setup.sh, shell-quoted so the
scripts can source it) and the app's ``.env``; any of them can be overridden
with ``--set NAME=VALUE`` (tests render with loopback ports and temp paths).

    python3 deploy/render.py --conf deploy/build/deploy.conf --out deploy/build
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
# Socket.IO's long-polling POSTs carry a few client messages, each at most the
# app's STREAM_MAX_MESSAGE_BYTES (16 KiB by default), plus Engine.IO framing:
# Nginx refuses bodies this much bigger than that limit before the app sees them.
SOCKET_BODY_MARGIN = 4096
# Nginx waits this much longer than Socket.IO's ping interval + timeout before
# it gives up on a quiet socket, so only Socket.IO ever decides a peer is gone.
SOCKET_TIMEOUT_MARGIN = 30


class RenderError(ValueError):
    """A setting is missing or a template names a value nobody provides."""


def read_conf(path: Path) -> dict[str, str]:
    """``KEY='value'`` lines as written by :func:`write_conf` (comments and blanks skipped)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise RenderError(f"{path}:{number}: expected KEY=value, not {line!r}")
        parts = shlex.split(raw) if raw else [""]
        values[key] = parts[0] if parts else ""
    return values


def conf_text(values: dict[str, str]) -> str:
    lines = ["# Deployment answers from setup.sh; the deploy scripts source this file."]
    lines += [f"{key}={shlex.quote(str(value))}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def read_env(path: Path) -> dict[str, str]:
    """The app's .env, enough of it for rendering (quotes stripped)."""
    values = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            raw = match.group(2).strip()
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
                raw = raw[1:-1]
            values[match.group(1)] = raw
    return values


def web_ports(settings: dict[str, str]) -> list[int]:
    if settings.get("WEB_PORTS"):
        return [int(port) for port in settings["WEB_PORTS"].split(",")]
    base = int(settings["BASE_PORT"])
    return list(range(base, base + int(settings["WEB_INSTANCES"])))


ROLES = ("all", "web", "consumer")


def host_role(settings: dict[str, str]) -> str:
    """What this host runs: everything (``all``), web instances only, or the consumer only."""
    role = settings.get("HOST_ROLE") or "all"
    if role not in ROLES:
        raise RenderError(f"HOST_ROLE must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def bind_host(env: dict[str, str]) -> str:
    """The address web instances listen on, as gunicorn's --bind wants it."""
    address = env.get("WEB_BIND_ADDRESS") or "127.0.0.1"
    return f"[{address}]" if ":" in address else address


def upstream_servers(settings: dict[str, str], drained: set[int]) -> list[tuple[str, bool]]:
    """``address:port`` of every web instance behind this host's Nginx.

    This host's own instances (none with WEB_INSTANCES=0: an Nginx host that
    runs no web instance), then those on other hosts from WEB_UPSTREAMS
    (``10.0.0.12:8000,10.0.0.12:8001``, their own WEB_BIND_ADDRESS): one
    upstream, so the sticky hash spans the hosts.  Each with whether it is
    drained (upgrade.sh takes local instances out in turn).
    """
    servers = [(f"127.0.0.1:{port}", port in drained) for port in web_ports(settings)]
    for item in settings.get("WEB_UPSTREAMS", "").split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}", item):
            raise RenderError(f"WEB_UPSTREAMS must list address:port entries, not {item!r}")
        servers.append((item, False))
    if not servers:
        raise RenderError(
            "no web instance for Nginx: WEB_INSTANCES is 0 and WEB_UPSTREAMS is empty"
        )
    return servers


def _listen(spec: str, suffix: str) -> str:
    """``80`` listens on every IPv4 and IPv6 address; ``127.0.0.1:18080`` on that one only."""
    lines = [f"    listen {spec}{suffix};"]
    if spec.isdigit():
        lines.append(f"    listen [::]:{spec}{suffix};")
    return "\n".join(lines)


def https_port_suffix(settings: dict[str, str]) -> str:
    """``:port`` when the site's HTTPS port is not 443, so links and origins name it."""
    https_port = settings.get("HTTPS_LISTEN", "443").rsplit(":", 1)[-1]
    return "" if https_port == "443" else f":{https_port}"


def public_origin(settings: dict[str, str]) -> str:
    """The site's one public origin: what PUBLIC_URL and PUBLIC_ORIGINS hold."""
    return f"https://{settings['APP_DOMAIN']}{https_port_suffix(settings)}"


def content_security_policy(origins: list[str]) -> str:
    """The app's default policy (pulseboard/config.py builds the same one).

    Socket.IO's WebSocket may go to the site's own origins only: each is named
    with its WebSocket scheme, since not every browser counts ws:/wss: as 'self'.
    """
    sockets = dict.fromkeys(
        ("wss://" if origin.startswith("https://") else "ws://") + origin.split("://", 1)[1]
        for origin in origins
    )
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src 'self' {' '.join(sockets)}; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'; object-src 'none'"
    )


def template_values(settings: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """Every placeholder's value, from deploy.conf settings and the app's .env."""
    slug = settings["APP_SLUG"]
    app_dir = settings["APP_DIR"].rstrip("/")
    venv_dir = settings.get("VENV_DIR") or f"{app_dir}/.venv"
    http_listen = settings.get("HTTP_LISTEN", "80")
    https_listen = settings.get("HTTPS_LISTEN", "443")
    ping = int(env.get("STREAM_PING_INTERVAL") or 25) + int(env.get("STREAM_PING_TIMEOUT") or 20)
    message_bytes = int(env.get("STREAM_MAX_MESSAGE_BYTES") or 16 * 1024)
    origins = [o.strip() for o in env.get("PUBLIC_ORIGINS", "").split(",") if o.strip()]
    # Instances taken out of the upstream while they restart (upgrade.sh): Nginx
    # sends them nothing, and their clients hash to the others.
    drained = {int(port) for port in settings.get("WEB_DRAINED", "").split(",") if port.strip()}
    dependencies = []
    if settings.get("DB_ENGINE") == "mysql":
        # Debian's MySQL-compatible server is MariaDB (install-deps.sh).
        debian = settings.get("OS_TARGET", "").startswith("debian-")
        dependencies.append("mariadb.service" if debian else "mysql.service")
    if settings.get("MQ") == "rabbitmq":
        dependencies.append("rabbitmq-server.service")
    in_home = any(
        path == root or path.startswith(root + "/")
        for path in (app_dir, venv_dir)
        for root in ("/home", "/root", "/run/user")
    )
    values = {
        "APP_NAME": settings["APP_NAME"],
        "APP_SLUG": slug,
        "APP_SLUG_ID": slug.replace("-", "_"),
        "APP_DOMAIN": settings["APP_DOMAIN"],
        "APP_DIR": app_dir,
        "VENV_DIR": venv_dir,
        "ENV_FILE": settings.get("ENV_FILE") or f"{app_dir}/.env",
        "STATIC_DIR": settings.get("STATIC_DIR") or f"{app_dir}/static",
        "STATE_DIR": settings.get("STATE_DIR") or f"/var/lib/{slug}",
        "DEPLOY_USER": settings["DEPLOY_USER"],
        "BASE_PORT": str(web_ports(settings)[0] if web_ports(settings) else settings["BASE_PORT"]),
        # A checkout under /home stays readable; everything else in /home is hidden.
        "PROTECT_HOME": "read-only" if in_home else "yes",
        "SERVICE_DEPENDENCIES": " ".join(dependencies),
        "DEMO_NOTE": ", demo producer" if settings.get("DEMO_PRODUCER") == "yes" else "",
        "NGINX_INCLUDE_DIR": settings.get("NGINX_INCLUDE_DIR", "/etc/nginx/snippets"),
        "HTTP_LISTEN_DIRECTIVES": _listen(http_listen, ""),
        "HTTPS_LISTEN_DIRECTIVES": _listen(https_listen, " ssl http2"),
        # The catch-all servers in front of the site's own (see site.conf).
        "HTTP_DEFAULT_LISTEN_DIRECTIVES": _listen(http_listen, " default_server"),
        "HTTPS_DEFAULT_LISTEN_DIRECTIVES": _listen(https_listen, " ssl http2 default_server"),
        "HTTPS_PORT_SUFFIX": https_port_suffix(settings),
        "TLS_CERT": settings.get("TLS_CERT") or f"/etc/ssl/{slug}/fullchain.pem",
        "TLS_KEY": settings.get("TLS_KEY") or f"/etc/ssl/{slug}/privkey.pem",
        "ACME_ROOT": settings.get("ACME_ROOT") or f"/var/www/{slug}-acme",
        "NGINX_ACCESS_LOG": settings.get("NGINX_ACCESS_LOG") or f"/var/log/nginx/{slug}.access.log",
        "NGINX_ERROR_LOG": settings.get("NGINX_ERROR_LOG") or f"/var/log/nginx/{slug}.error.log",
        "CLIENT_MAX_BODY_SIZE": str(int(env.get("MAX_CONTENT_LENGTH") or 1048576)),
        "SOCKET_MAX_BODY_SIZE": str(message_bytes + SOCKET_BODY_MARGIN),
        "CONTENT_SECURITY_POLICY": env.get("CONTENT_SECURITY_POLICY")
        or content_security_policy(origins or [public_origin(settings)]),
        "SOCKET_READ_TIMEOUT": f"{ping + SOCKET_TIMEOUT_MARGIN}s",
        "WEB_BIND_HOST": bind_host(env),
        # Only the all-in-one host runs Nginx (outputs()).
        "UPSTREAM_SERVERS": (
            "\n".join(
                f"    server {address} max_fails=3 fail_timeout=10s{' down' if down else ''};"
                for address, down in upstream_servers(settings, drained)
            )
            if host_role(settings) == "all"
            else ""
        ),
    }
    if '"' in values["CONTENT_SECURITY_POLICY"]:
        raise RenderError("CONTENT_SECURITY_POLICY may not contain double quotes")
    values["HARDENING"] = render_text(
        (TEMPLATES / "systemd" / "hardening.conf").read_text(), values
    ).rstrip("\n")
    return values


def render_text(text: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise RenderError(f"no value for {{{{{name}}}}}")
        return values[name]

    return PLACEHOLDER.sub(substitute, text)


def outputs(settings: dict[str, str]) -> dict[str, str]:
    """Rendered file (relative to the output dir) → template (relative to templates/)."""
    slug = settings["APP_SLUG"]
    role = host_role(settings)
    files = {f"systemd/{slug}.target": "systemd/app.target"}
    if role in ("all", "web"):
        files[f"systemd/{slug}-web@.service"] = "systemd/web@.service"
    if role == "all":
        # Once per deployment: the demo, the session cleanup, backups and the site.
        files |= {
            f"systemd/{slug}-demo.service": "systemd/demo.service",
            f"systemd/{slug}-session-cleanup.service": "systemd/session-cleanup.service",
            f"systemd/{slug}-session-cleanup.timer": "systemd/session-cleanup.timer",
            f"systemd/{slug}-backup.service": "systemd/backup.service",
            f"systemd/{slug}-backup.timer": "systemd/backup.timer",
            f"nginx/{slug}.conf": "nginx/site.conf",
            f"nginx/{slug}-upstream.conf": "nginx/upstream.conf",
            f"nginx/{slug}-security-headers.conf": "nginx/security-headers.conf",
            f"nginx/{slug}-proxy-headers.conf": "nginx/proxy-headers.conf",
        }
    if role in ("all", "consumer") and settings.get("MQ", "rabbitmq") == "rabbitmq":
        # With the embedded bus (MQ=memory) the consumer lives in the web process.
        files[f"systemd/{slug}-consumer.service"] = "systemd/consumer.service"
    return files


def render_all(settings: dict[str, str], env: dict[str, str], out_dir: Path) -> list[Path]:
    """Write every asset into ``out_dir``; returns the files whose content changed.

    Unchanged files are not rewritten (their times stay), and files left over
    from earlier answers (another slug, no consumer) are removed.
    """
    values = template_values(settings, env)
    rendered = {
        out_dir / name: render_text((TEMPLATES / template).read_text(), values)
        for name, template in outputs(settings).items()
    }
    changed = []
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    for folder in ("systemd", "nginx"):
        for stale in sorted((out_dir / folder).glob("*")):
            if stale.is_file() and stale not in rendered:
                stale.unlink()
                changed.append(stale)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", type=Path, required=True, help="deploy.conf from setup.sh")
    parser.add_argument("--env-file", type=Path, help="the app's .env (default: APP_DIR/.env)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    try:
        settings = read_conf(args.conf)
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep:
                raise RenderError(f"--set needs NAME=VALUE, not {item!r}")
            settings[name] = value
        env_file = args.env_file or Path(settings.get("ENV_FILE") or f"{settings['APP_DIR']}/.env")
        changed = render_all(settings, read_env(env_file), args.out)
    except (OSError, KeyError, ValueError) as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"rendered {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
