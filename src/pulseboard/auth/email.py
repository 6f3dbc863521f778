"""Account mail: verification, password reset, and "someone used your address".

Sent over SMTP (``MAIL_*`` settings).  Without ``MAIL_SERVER`` (development)
the message is written to the log instead, links included, so nothing is
silently dropped; in production a missing MAIL_SERVER is logged as an error.

The message is rendered during the request and delivered from a background
task (a greenlet under gunicorn's gevent worker): a page that sends mail only
for known addresses must answer as fast as one that sends none, or its timing
tells which addresses have accounts.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from email.message import EmailMessage

from flask import Flask, current_app, render_template

from ..urls import external_url

log = logging.getLogger(__name__)


def send_mail(to: str, subject: str, template: str, **context) -> None:
    config = current_app.config
    message = EmailMessage()
    message["From"] = config["MAIL_DEFAULT_SENDER"]
    message["To"] = to
    message["Subject"] = f"{subject} · {config['APP_NAME']}"
    message.set_content(render_template(f"email/{template}.txt", **context))
    if not config["MAIL_SERVER"]:
        if config["APP_ENV"] == "production":
            # Never the body: it holds a link that signs someone in or resets a password.
            log.error("MAIL_SERVER is not set; %r to %s was not sent", subject, to)
        else:
            # The text as a reader sees it: the wire form would cut links across lines.
            log.info(
                "MAIL_SERVER is not set; mail to %s follows:\nSubject: %s\n\n%s",
                to,
                message["Subject"],
                message.get_content(),
            )
        return
    app = current_app._get_current_object()
    threading.Thread(
        target=_deliver_in_background, args=(app, message), name="mail", daemon=True
    ).start()


def _deliver_in_background(app: Flask, message: EmailMessage) -> None:
    subject, to = message["Subject"], message["To"]
    with app.app_context():
        try:
            _deliver(message, app.config)
        except (OSError, smtplib.SMTPException) as error:
            # The visitor has had the same page either way; the operator sees this.
            log.error("could not send %r to %s: %s", subject, to, error)
        except Exception:
            log.exception("could not send %r to %s", subject, to)


def _deliver(message: EmailMessage, config) -> None:
    host, port, timeout = config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_TIMEOUT"]
    context = ssl.create_default_context()
    if config["MAIL_USE_SSL"]:
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config["MAIL_USE_TLS"] and not config["MAIL_USE_SSL"]:
            smtp.starttls(context=context)
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
        smtp.send_message(message)


def send_address_taken_notice(owner, subject: str) -> None:
    """Tell an account's owner that someone tried to use their address elsewhere."""
    send_mail(
        owner.email,
        subject,
        "already_registered",
        user=owner,
        login_link=external_url("auth.login"),
        forgot_link=external_url("auth.forgot_password"),
    )
