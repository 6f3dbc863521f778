"""setup.sh's questions: ask, validate, then write .env and deploy.conf and render the assets.

Three ways to answer, one set of checks:

- at a terminal: an invalid answer is refused with the reason and the
  question asked again;
- piped on stdin, one line per question (an empty line taking the default);
- ``--defaults``: every question takes its default (on a second run, the
  previous answer), no input read;
- ``--answers FILE``: ``KEY=value`` lines (keys are the names shown in
  brackets by each question); missing keys take the default.

In the last three nobody is there to answer again: an invalid answer stops the
run with the reason (exit 2) before anything is written. Piped answers in
particular must not go on, or each later line would answer the question before it.
Standard library only, Python 3.8+: this runs before the app's Python exists.
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import quote as url_quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envfile
import questions
import render

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """An answer that cannot be used where nobody can be asked again."""


class Asker:
    """Puts each question to the operator (or the answers file) until it gets a valid answer."""

    def __init__(self, mode: str, given: dict[str, str] | None = None):
        self.mode = mode  # "prompt", "defaults" or "file"
        self.given = dict(given or {})
        self.tty = sys.stdin.isatty()

    def ask(self, question: questions.Question, answers: dict[str, str]) -> str:
        default = question.default_for(answers)
        if self.mode != "prompt":
            raw = self.given.pop(question.key, default) if self.mode == "file" else default
            try:
                return question.check(raw, answers)
            except questions.Invalid as reason:
                raise Stop(f"{question.key}={raw!r}: {reason}") from None
        if question.note:
            print(f"  {question.note}")
        while True:
            shown = "(hidden)" if question.secret and default else default
            prompt = f"{question.text} [{question.key}] ({shown}): "
            if question.secret and self.tty:
                line = getpass.getpass(prompt) + "\n"
            else:
                print(prompt, end="", flush=True)
                line = sys.stdin.readline()
                if not self.tty:
                    # Piped answers: show what was answered, secrets excepted.
                    print("(hidden)" if question.secret and line.strip() else line.strip())
            raw = line.strip() or default
            try:
                return question.check(raw, answers)
            except questions.Invalid as reason:
                if not self.tty or not line:  # piped, or end of input: nobody answers again
                    raise Stop(f"{question.key}={raw!r}: {reason}") from None
                print(f"  invalid: {reason}", flush=True)

    def unknown_keys(self) -> list[str]:
        """Keys in the answers file that no question has (a question that did not
        apply, such as a provider's credentials with that provider off, is fine)."""
        known = {question.key for question in questions.ALL}
        return sorted(set(self.given) - known)


def read_answers_file(path: Path) -> dict[str, str]:
    given = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise Stop(f"{path}:{number}: expected KEY=value, not {line!r}")
        given[key.strip()] = envfile.parse_value(value)
    return given


def previous_answers(conf: Path, env: dict[str, str]) -> dict[str, str]:
    """Earlier answers, so that a second run offers (and with --defaults keeps) them."""
    previous = dict(env)
    if conf.exists():
        previous.update(render.read_conf(conf))
    return previous


def secret(previous: str | None, minimum: int = 32) -> str:
    return previous if previous and len(previous) >= minimum else secrets.token_urlsafe(48)


def on_services_host(url: str, address: str) -> str:
    """``url`` (the all-in-one host's, on 127.0.0.1) pointed at that host's private address.

    A cluster's BROKER_URL (nodes separated by ";") names its nodes already."""
    if ";" in url:
        return url
    host = f"[{address}]" if ":" in address else address
    return re.sub(r"@(127\.0\.0\.1|localhost)(?=[:/])", f"@{host}", url, count=1)


def shared_env(answers: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """On a web or consumer host: the all-in-one host's secret and services, from its .env."""
    database, broker = env.get("DATABASE_URL", ""), env.get("BROKER_URL", "")
    if len(env.get("SECRET_KEY", "")) < 32 or not database.startswith("mysql"):
        raise Stop(
            f"HOST_ROLE={answers['HOST_ROLE']}: copy the .env of the all-in-one host to "
            "this host first (it holds SECRET_KEY and the database and RabbitMQ passwords), "
            "then run setup.sh again (RUNBOOK.md, Several hosts)"
        )
    if not broker.startswith("amqp"):
        raise Stop("the copied .env has no amqp:// BROKER_URL: several hosts share RabbitMQ")
    address = answers["SERVICES_ADDRESS"]
    return {
        "DATABASE_URL": on_services_host(database, address),
        "BROKER_URL": on_services_host(broker, address),
    }


def database_url(answers: dict[str, str], env: dict[str, str], previous: dict[str, str]) -> str:
    slug = answers["APP_SLUG"]
    old = env.get("DATABASE_URL", "")
    if answers["DB_ENGINE"] == "sqlite":
        if old.startswith("sqlite:") and previous.get("DB_ENGINE") == "sqlite":
            return old
        return f"sqlite:////var/lib/{slug}/{slug}.db"
    if old.startswith("mysql") and previous.get("APP_SLUG") == slug:
        return old  # the database and its password were made for this slug already
    name = slug.replace("-", "_")
    password = secrets.token_urlsafe(24)
    return f"mysql+pymysql://{name}:{password}@127.0.0.1:3306/{name}?charset=utf8mb4"


def broker_url(answers: dict[str, str], env: dict[str, str], previous: dict[str, str]) -> str:
    slug = answers["APP_SLUG"]
    old = env.get("BROKER_URL", "")
    if answers["MQ"] == "memory":
        # The embedded bus in the state folder: the consumer runs inside the one web
        # instance, and the demo producer and the CLI still reach it.
        return f"filesystem:///var/lib/{slug}/bus"
    if old.startswith("amqp") and previous.get("APP_SLUG") == slug:
        return old
    # One vhost and one user per install: its queues and exchanges are its own.
    password = secrets.token_urlsafe(24)
    return f"amqp://{slug}:{url_quote(password, safe='')}@127.0.0.1:5672/{slug}"


def env_updates(
    answers: dict[str, str], env: dict[str, str], previous: dict[str, str], origin: str
) -> dict:
    """The .env variables the answers decide; None removes a variable.

    ``origin`` is the site's https origin (render.public_origin)."""
    domain = answers["APP_DOMAIN"]
    updates: dict[str, str | None] = {
        "APP_ENV": "production",
        "SECRET_KEY": secret(env.get("SECRET_KEY")),
        "APP_NAME": answers["APP_NAME"],
        "APP_SLUG": answers["APP_SLUG"],
        "APP_DOMAIN": domain,
        "PUBLIC_ORIGINS": origin,
        # Mail links are built on PUBLIC_URL and the app answers only to this
        # host, whatever Host a request claims (Nginx closes the others too).
        "PUBLIC_URL": origin,
        "TRUSTED_HOSTS": domain,
        "PROXY_FIX_HOPS": "1",
        "DATABASE_URL": database_url(answers, env, previous),
        "BROKER_URL": broker_url(answers, env, previous),
        "AUTH_PASSWORD_ENABLED": questions.flag(answers["AUTH_PASSWORD_ENABLED"]),
        "AUTH_EMAIL_VERIFICATION": questions.flag(answers.get("AUTH_EMAIL_VERIFICATION", "no")),
        "MAIL_SERVER": answers.get("MAIL_SERVER") or None,
        "MAIL_PORT": answers.get("MAIL_PORT") if answers.get("MAIL_SERVER") else None,
        "MAIL_USERNAME": answers.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": answers.get("MAIL_PASSWORD") or None,
        "UI_LAYOUT": answers["UI_LAYOUT"],
        "UI_DEFAULT_THEME": answers["UI_DEFAULT_THEME"],
        "WELCOME_ENABLED": questions.flag(answers["WELCOME_ENABLED"]),
        "DEMO_PAGES": answers["DEMO_PAGES"],
        "BRAND_PRIMARY_COLOR": answers["BRAND_PRIMARY_COLOR"],
        "BRAND_LOGO_TEXT": answers["BRAND_LOGO_TEXT"],
        # A web-only host listens on its private address for the all-in-one host's
        # Nginx, and believes X-Forwarded-For from that Nginx alone.
        "WEB_BIND_ADDRESS": answers.get("WEB_BIND_ADDRESS") or None,
        "TRUSTED_PROXIES": answers["SERVICES_ADDRESS"] if answers.get("WEB_BIND_ADDRESS") else None,
    }
    if answers.get("HOST_ROLE", "all") != "all":
        updates.update(shared_env(answers, env))
    chosen = answers["OAUTH_PROVIDERS"].split(",") if answers["OAUTH_PROVIDERS"] != "none" else []
    for provider, keys in questions.PROVIDER_KEYS.items():
        for key in keys:
            # A provider is on when its credentials are set: an unchosen one loses them.
            updates[key] = (answers.get(key) or None) if provider in chosen else None
    return updates


# deploy.conf settings no question asks, which an operator may add by hand
# (the site on other ports); a second run keeps them.
HAND_SET = ("HTTP_LISTEN", "HTTPS_LISTEN")


def conf_values(
    answers: dict[str, str], args: argparse.Namespace, previous: dict[str, str]
) -> dict[str, str]:
    keys = [
        "APP_NAME",
        "APP_SLUG",
        "APP_DOMAIN",
        "OS_TARGET",
        "DEPLOY_USER",
        "BASE_PORT",
        "WEB_INSTANCES",
        "OAUTH_PROVIDERS",
        "DB_ENGINE",
        "MQ",
        "DELIVERY",
        "DEMO_PRODUCER",
        "TLS_MODE",
        "LETSENCRYPT_EMAIL",
        "HOST_ROLE",
        "WEB_UPSTREAMS",
        "PRIVATE_NETWORK",
        "SERVICES_ADDRESS",
    ]
    values = {key: answers.get(key, "") for key in keys}
    # The app needs 3.11+; deadsnakes builds 3.11 for both releases, the version CI runs.
    values["PYTHON"] = "python3.11"
    values["APP_DIR"] = str(args.app_dir)
    values["VENV_DIR"] = str(args.venv or args.app_dir / ".venv")
    values["ENV_FILE"] = str(args.env_file)
    values.update({key: previous[key] for key in HAND_SET if previous.get(key)})
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setup.sh", description="Pulseboard setup questions.")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--defaults", action="store_true", help="take every default; ask nothing")
    how.add_argument("--answers", type=Path, metavar="FILE", help="KEY=value answers")
    parser.add_argument("--app-dir", type=Path, default=PROJECT_ROOT, help="the checkout to run")
    parser.add_argument("--venv", type=Path, help="virtualenv (default APP_DIR/.venv)")
    parser.add_argument("--env-file", type=Path, help="the .env to write (default APP_DIR/.env)")
    parser.add_argument("--output", type=Path, help="rendered assets (default deploy/build)")
    args = parser.parse_args(argv)
    args.app_dir = args.app_dir.resolve()
    args.env_file = (args.env_file or args.app_dir / ".env").resolve()
    args.output = (args.output or args.app_dir / "deploy" / "build").resolve()
    return args


def run(args: argparse.Namespace) -> int:
    conf_path = args.output / "deploy.conf"
    env = envfile.read(args.env_file)
    previous = previous_answers(conf_path, env)
    if args.defaults:
        asker = Asker("defaults")
    elif args.answers:
        asker = Asker("file", read_answers_file(args.answers))
    else:
        asker = Asker("prompt")
        print("Pulseboard setup. Enter takes the default shown in parentheses.\n")
    answers: dict[str, str] = {}
    for question in questions.ALL:
        if question.applies(answers):
            question.previous = previous.get(question.key)
            answers[question.key] = asker.ask(question, answers)
    if asker.unknown_keys():
        raise Stop(f"unknown answer key(s): {', '.join(asker.unknown_keys())}")
    for warning in questions.warnings(answers):
        print(f"warning: {warning}", file=sys.stderr)

    conf = conf_values(answers, args, previous)
    updates = env_updates(answers, env, previous, render.public_origin(conf))
    args.output.mkdir(parents=True, exist_ok=True)
    env_changed = envfile.write(args.env_file, updates)
    text = render.conf_text(conf)
    conf_changed = not conf_path.exists() or conf_path.read_text() != text
    if conf_changed:
        conf_path.write_text(text)
    changed = render.render_all(conf, envfile.read(args.env_file), args.output)
    print(f"{'wrote' if env_changed else 'kept'} {args.env_file} (mode 0600)")
    print(f"{'wrote' if conf_changed else 'kept'} {conf_path}")
    for path in changed:
        print(f"rendered {path}")
    if not changed:
        print(f"assets in {args.output} unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except Stop as reason:
        print(f"setup: {reason}", file=sys.stderr)
        return 2
    except (render.RenderError, ValueError, OSError) as error:
        print(f"setup: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
