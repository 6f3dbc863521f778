"""The setup questions: what each asks, its default, and the check that refuses a bad answer.

Their order is the order setup.sh asks them (and the order of piped answers).
Each key is the name to use in an ``--answers`` file; keys that are also app
settings (``APP_SLUG``, ``UI_LAYOUT`` …) carry the same name into ``.env``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The same rules as the app's config.py, so setup never writes a .env the app refuses.
SLUG = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DOMAIN = re.compile(
    r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$", re.IGNORECASE
)
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROVIDERS = ("google", "facebook", "github", "microsoft", "apple")
PROVIDER_KEYS = {
    "google": ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"),
    "facebook": ("FACEBOOK_CLIENT_ID", "FACEBOOK_CLIENT_SECRET"),
    "github": ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"),
    "microsoft": ("MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET", "MICROSOFT_TENANT"),
    "apple": ("APPLE_CLIENT_ID", "APPLE_TEAM_ID", "APPLE_KEY_ID", "APPLE_PRIVATE_KEY_PATH"),
}
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
MAX_INSTANCES = 16
# The systems deploy/scripts install on (install-deps.sh checks it is this one).
OS_TARGETS = ("ubuntu-22.04", "ubuntu-24.04", "debian-12")
# all: one server runs everything; web, consumer: that part only (RUNBOOK.md, Several hosts).
HOST_ROLES = ("all", "web", "consumer")
# What the services beside the app listen on, on the same host: no web instance
# may take one of these ports (it would fail to start, or the service would).
SERVICE_PORTS = {
    3306: "MySQL/MariaDB",
    4369: "RabbitMQ's epmd",
    5672: "RabbitMQ",
    6379: "Redis",
    9090: "Prometheus",
    9100: "Prometheus' node exporter",
    9108: "the consumer's metrics",
    15672: "RabbitMQ's management plugin",
    25672: "RabbitMQ's clustering",
    33060: "MySQL's X protocol",
}
YES = ("yes", "y", "1", "true", "on")
NO = ("no", "n", "0", "false", "off")


class Invalid(ValueError):
    """The reason an answer is refused, shown to the operator."""


@dataclass
class Question:
    key: str
    text: str
    default: str | Callable[[dict], str]
    check_answer: Callable[[str, dict], str]
    applies: Callable[[dict], bool] = field(default=lambda answers: True)
    note: str = ""
    secret: bool = False
    previous: str | None = None  # the answer of the last run, when there was one

    def default_for(self, answers: dict) -> str:
        if self.previous is not None:
            return self.previous
        return self.default(answers) if callable(self.default) else self.default

    def check(self, raw: str, answers: dict) -> str:
        return self.check_answer(raw.strip(), answers)


def flag(answer: str) -> str:
    return "1" if answer == "yes" else "0"


def yes_no(raw: str, answers: dict) -> str:
    lowered = raw.lower()
    if lowered in YES:
        return "yes"
    if lowered in NO:
        return "no"
    raise Invalid(f"answer yes or no, not {raw!r}")


def choice(*options: str) -> Callable[[str, dict], str]:
    def check(raw: str, answers: dict) -> str:
        if raw.lower() not in options:
            raise Invalid(f"unknown choice {raw!r}; choose one of {', '.join(options)}")
        return raw.lower()

    return check


def text(raw: str, answers: dict) -> str:
    if not raw:
        raise Invalid("may not be empty")
    if any(char in raw for char in "'\"\\$`\n"):
        raise Invalid("may not contain quotes, backslashes, $ or `")
    return raw


def cleared(raw: str) -> bool:
    """Enter keeps the default; "none" empties an optional answer that has one."""
    return not raw or raw.lower() == "none"


def optional_text(raw: str, answers: dict) -> str:
    return "" if cleared(raw) else text(raw, answers)


def slug(raw: str, answers: dict) -> str:
    if not SLUG.match(raw):
        raise Invalid(
            f"invalid slug {raw!r}: 2-32 lowercase letters, digits or dashes, "
            "starting with a letter and not ending with a dash"
        )
    return raw


def slugify(name: str) -> str:
    candidate = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].rstrip("-")
    return candidate if SLUG.match(candidate) else "pulseboard"


def domain(raw: str, answers: dict) -> str:
    if not DOMAIN.match(raw) or raw.replace(".", "").isdigit():
        raise Invalid(f"invalid domain {raw!r}: a host name such as app.example.com")
    return raw.lower()


def deploy_user(raw: str, answers: dict) -> str:
    if raw == "root":
        raise Invalid("the services must not run as root; pick a dedicated user")
    if not USER.match(raw):
        raise Invalid(f"invalid user name {raw!r}: lowercase letters, digits, _ and -")
    return raw


def port(raw: str, answers: dict) -> str:
    if not raw.isdigit() or not 1024 <= int(raw) <= 65535:
        raise Invalid(f"invalid port {raw!r}: a number from 1024 to 65535")
    return str(int(raw))


def instances(raw: str, answers: dict) -> str:
    # 0: this host's Nginx serves the web instances of other hosts only (WEB_UPSTREAMS).
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_INSTANCES:
        raise Invalid(f"invalid number {raw!r}: from 0 to {MAX_INSTANCES}")
    first, last = int(answers["BASE_PORT"]), int(answers["BASE_PORT"]) + int(raw) - 1
    if last > 65535:
        raise Invalid(f"{raw} instances from port {first} go past 65535")
    taken = [f"{port} ({name})" for port, name in SERVICE_PORTS.items() if first <= port <= last]
    if taken:
        raise Invalid(f"ports {first}-{last} include {', '.join(taken)}: choose another base port")
    return str(int(raw))


def providers(raw: str, answers: dict) -> str:
    if raw.lower() in ("", "none"):
        return "none"
    chosen = [item.strip().lower() for item in raw.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in PROVIDERS]
    if unknown:
        raise Invalid(
            f"unknown provider(s) {', '.join(unknown)}; choose from {', '.join(PROVIDERS)}"
        )
    return ",".join(name for name in PROVIDERS if name in chosen)


def password_login(raw: str, answers: dict) -> str:
    answer = yes_no(raw, answers)
    if answer == "no" and answers["OAUTH_PROVIDERS"] == "none":
        raise Invalid("with no OAuth provider, email+password is the only way to sign in")
    return answer


def mq(raw: str, answers: dict) -> str:
    answer = choice("rabbitmq", "memory")(raw, answers)
    if answer == "memory" and answers["WEB_INSTANCES"] != "1":
        raise Invalid("the in-process bus serves one web instance; choose rabbitmq")
    return answer


def delivery(raw: str, answers: dict) -> str:
    if raw.lower() != "websocket":
        raise Invalid(
            f"unknown choice {raw!r}; Socket.IO delivers over WebSocket and falls back "
            "to long-polling by itself: answer websocket"
        )
    return "websocket"


def demo_pages(raw: str, answers: dict) -> str:
    chosen = [item.strip().lower() for item in raw.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in DEMO_PAGES]
    if unknown or not chosen:
        raise Invalid(
            f"unknown page(s) {', '.join(unknown) or '(none)'}; pick from "
            f"{', '.join(DEMO_PAGES)}"
        )
    return ",".join(page for page in DEMO_PAGES if page in chosen)


def color(raw: str, answers: dict) -> str:
    if not COLOR.match(raw):
        raise Invalid(f"invalid colour {raw!r}: six hex digits like #4f46e5")
    return raw.lower()


def email(raw: str, answers: dict) -> str:
    if cleared(raw):
        return ""
    if not EMAIL.match(raw):
        raise Invalid(f"invalid email address {raw!r}")
    return raw


def mail_server(raw: str, answers: dict) -> str:
    if cleared(raw):
        return ""
    if not DOMAIN.match(raw) and not re.match(r"^\d+\.\d+\.\d+\.\d+$", raw):
        raise Invalid(f"invalid mail server {raw!r}: a host name such as smtp.example.com")
    return raw


def any_port(raw: str, answers: dict) -> str:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise Invalid(f"invalid port {raw!r}: a number from 1 to 65535")
    return raw


def tls_mode(raw: str, answers: dict) -> str:
    answer = choice("letsencrypt", "selfsigned")(raw, answers)
    if answer == "letsencrypt" and answers["APP_DOMAIN"] == "localhost":
        raise Invalid("Let's Encrypt cannot certify localhost; choose selfsigned")
    return answer


def detected_os(answers: dict) -> str:
    """This system as an OS_TARGET answer, when it is one of them."""
    release = Path("/etc/os-release")
    text = release.read_text() if release.exists() else ""
    fields = dict(re.findall(r'^(ID|VERSION_ID)="?([^"\n]*)"?$', text, re.M))
    found = f"{fields.get('ID')}-{fields.get('VERSION_ID')}"
    return found if found in OS_TARGETS else "ubuntu-24.04"


def credential(key: str, provider: str, required: bool = False, secret: bool = False) -> Question:
    def check(raw: str, answers: dict) -> str:
        first = PROVIDER_KEYS[provider][0]
        if required and not raw and answers.get(first):
            raise Invalid(f"{key} is needed with {first}")
        return optional_text(raw, answers)

    label = key.replace("_", " ").lower()
    return Question(
        key,
        f"{provider.capitalize()} {label.split(' ', 1)[1]} (none: set it in .env later)",
        "",
        check,
        applies=lambda answers: provider in answers["OAUTH_PROVIDERS"].split(","),
        secret=secret,
    )


def on(key: str, value: str = "yes") -> Callable[[dict], bool]:
    return lambda answers: answers.get(key) == value


ALL = [
    Question("APP_NAME", "1) System display name", "Pulseboard", text),
    Question(
        "APP_SLUG",
        "   System slug (names units, Nginx site, queues)",
        lambda a: slugify(a["APP_NAME"]),
        slug,
    ),
    Question("APP_DOMAIN", "2) Domain name", "localhost", domain),
    Question(
        "OS_TARGET",
        "3) OS target: ubuntu-22.04, ubuntu-24.04 or debian-12",
        detected_os,
        choice(*OS_TARGETS),
    ),
    Question(
        "DEPLOY_USER",
        "   Deploy user (runs the services; created if missing)",
        lambda a: a["APP_SLUG"],
        deploy_user,
    ),
    Question("BASE_PORT", "4) Backend port on 127.0.0.1 of the first web instance", "8000", port),
    Question(
        "WEB_INSTANCES", "   Number of web instances (ports counting up from there)", "2", instances
    ),
    Question(
        "OAUTH_PROVIDERS",
        "5) OAuth providers, comma-separated: google, facebook, github, microsoft, apple "
        "or none",
        "none",
        providers,
    ),
    credential("GOOGLE_CLIENT_ID", "google"),
    credential("GOOGLE_CLIENT_SECRET", "google", required=True, secret=True),
    credential("FACEBOOK_CLIENT_ID", "facebook"),
    credential("FACEBOOK_CLIENT_SECRET", "facebook", required=True, secret=True),
    credential("GITHUB_CLIENT_ID", "github"),
    credential("GITHUB_CLIENT_SECRET", "github", required=True, secret=True),
    credential("MICROSOFT_CLIENT_ID", "microsoft"),
    credential("MICROSOFT_CLIENT_SECRET", "microsoft", required=True, secret=True),
    credential("MICROSOFT_TENANT", "microsoft"),
    credential("APPLE_CLIENT_ID", "apple"),
    credential("APPLE_TEAM_ID", "apple", required=True),
    credential("APPLE_KEY_ID", "apple", required=True),
    credential("APPLE_PRIVATE_KEY_PATH", "apple", required=True),
    Question(
        "AUTH_PASSWORD_ENABLED", "6) Email + password sign-in (yes/no)", "yes", password_login
    ),
    Question(
        "AUTH_EMAIL_VERIFICATION",
        "   Require email verification (yes/no)",
        "yes",
        yes_no,
        applies=on("AUTH_PASSWORD_ENABLED"),
    ),
    Question(
        "MAIL_SERVER",
        "   SMTP server for verification and reset mail (none: write mail to the log)",
        "",
        mail_server,
        applies=on("AUTH_PASSWORD_ENABLED"),
    ),
    Question(
        "MAIL_PORT",
        "   SMTP port (587 STARTTLS)",
        "587",
        any_port,
        applies=lambda a: bool(a.get("MAIL_SERVER")),
    ),
    Question(
        "MAIL_USERNAME",
        "   SMTP user name",
        "",
        optional_text,
        applies=lambda a: bool(a.get("MAIL_SERVER")),
    ),
    Question(
        "MAIL_PASSWORD",
        "   SMTP password",
        "",
        optional_text,
        applies=lambda a: bool(a.get("MAIL_SERVER")),
        secret=True,
    ),
    Question(
        "DB_ENGINE",
        "7) Database: mysql (production) or sqlite (small installs)",
        "mysql",
        choice("mysql", "sqlite"),
    ),
    Question(
        "MQ",
        "8) Message queue: rabbitmq, or memory (embedded: one web instance, no broker)",
        "rabbitmq",
        mq,
    ),
    Question(
        "DELIVERY",
        "9) Browser delivery",
        "websocket",
        delivery,
        note="Socket.IO: WebSocket first, long-polling when a network blocks it.",
    ),
    Question(
        "UI_LAYOUT",
        "10) Layout: topnav, sidebar or both",
        "both",
        choice("topnav", "sidebar", "both"),
    ),
    Question(
        "UI_DEFAULT_THEME",
        "11) Theme before a user picks (light/dark toggle): auto, " "light or dark",
        "auto",
        choice("auto", "light", "dark"),
    ),
    Question(
        "WELCOME_ENABLED",
        "12) Welcome page on by default (yes/no)",
        "yes",
        yes_no,
        note="It is turned off for everyone by WELCOME_ENABLED=0 in .env (this answer), "
        "and by each user with the toggle in Settings.",
    ),
    Question("DEMO_PAGES", "13) Demo pages, comma-separated", ",".join(DEMO_PAGES), demo_pages),
    Question(
        "DEMO_PRODUCER",
        "    Run the demo producer (sample events for the live pages)",
        "no",
        yes_no,
        applies=on("MQ", "rabbitmq"),
    ),
    Question("BRAND_PRIMARY_COLOR", "14) Primary colour", "#4f46e5", color),
    Question("BRAND_LOGO_TEXT", "    Logo text", lambda a: a["APP_NAME"], text),
    Question(
        "TLS_MODE",
        "    TLS certificate: letsencrypt or selfsigned",
        lambda a: "selfsigned" if a["APP_DOMAIN"] == "localhost" else "letsencrypt",
        tls_mode,
    ),
    Question(
        "LETSENCRYPT_EMAIL",
        "    Email for Let's Encrypt expiry notices (may be empty)",
        "",
        email,
        applies=on("TLS_MODE", "letsencrypt"),
    ),
]


def host_role(raw: str, answers: dict) -> str:
    role = choice(*HOST_ROLES)(raw, answers)
    if role != "all" and (answers["MQ"] != "rabbitmq" or answers["DB_ENGINE"] != "mysql"):
        raise Invalid(
            "several hosts share RabbitMQ and MySQL: answer MQ=rabbitmq and DB_ENGINE=mysql"
        )
    return role


def address(raw: str, answers: dict) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise Invalid(f"invalid address {raw!r}: an IP address such as 10.0.0.11") from None


def optional_network(raw: str, answers: dict) -> str:
    if cleared(raw):
        return ""
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise Invalid(f"invalid network {raw!r}: a CIDR network such as 10.0.0.0/24") from None


def upstreams(raw: str, answers: dict) -> str:
    if cleared(raw):
        if answers["WEB_INSTANCES"] == "0":
            raise Invalid("with no web instance here (WEB_INSTANCES=0), name those of other hosts")
        return ""
    found = []
    for item in (part.strip() for part in raw.split(",")):
        host, sep, number = item.rpartition(":")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            host = ""
        if not sep or not host or not number.isdigit() or not 1 <= int(number) <= 65535:
            raise Invalid(f"invalid web instance {item!r}: address:port, such as 10.0.0.12:8000")
        found.append(item)
    return ",".join(found)


def several_hosts(answers: dict) -> bool:
    return answers.get("HOST_ROLE", "all") != "all"


ALL += [
    Question(
        "HOST_ROLE",
        "15) This host runs: all (the site, database, RabbitMQ and every part), "
        "web (web instances only) or consumer (the consumer only)",
        "all",
        host_role,
        note="More than one host: set up the all-in-one host first, then copy its .env "
        "to each other host (RUNBOOK.md, Several hosts).",
    ),
    Question(
        "WEB_UPSTREAMS",
        "    Web instances on other hosts for this Nginx, address:port comma-separated "
        "(none: this host's only)",
        "",
        upstreams,
        applies=lambda a: not several_hosts(a) and a["MQ"] == "rabbitmq",
    ),
    Question(
        "PRIVATE_NETWORK",
        "    Private network of the other hosts, let in to MySQL and RabbitMQ here "
        "(CIDR; none: loopback only)",
        "",
        optional_network,
        applies=lambda a: not several_hosts(a) and a["MQ"] == "rabbitmq",
    ),
    Question(
        "SERVICES_ADDRESS",
        "    Private address of the all-in-one host (its Nginx, MySQL and RabbitMQ)",
        "",
        address,
        applies=several_hosts,
    ),
    Question(
        "WEB_BIND_ADDRESS",
        "    This host's private address, where that Nginx reaches its web instances",
        "",
        address,
        applies=on("HOST_ROLE", "web"),
    ),
]


def warnings(answers: dict) -> list[str]:
    found = []
    if answers["DB_ENGINE"] == "sqlite" and answers["WEB_INSTANCES"] != "1":
        found.append("SQLite has one writer at a time; several instances may wait on each other")
    return found
