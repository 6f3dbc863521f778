"""gunicorn's logs without the secrets some URLs carry, and without false alarms.

Verification, reset and email-change links hold a token in their path,
OAuth callbacks a code and state in their query, and a long-polling request
its Engine.IO sid, the session's only credential after the handshake; none of
that may reach a log (Nginx's access log follows the same rules).
``make dev`` asks for the reloader on purpose, so gunicorn's reminder that it
is on is a note there, not a warning.

A long-polling client makes a request for each batch of events it takes and
each message it sends: on a busy instance thousands a second, one access-log
line each, which cost a sixth of the worker's time in the polling benchmark.
Those of an open session that succeed are left out (Nginx's access log has
them); the handshake, any failure and everything else are logged.
``LOG_SOCKET_POLLS=1`` logs them all.
"""

from __future__ import annotations

import os
import re

from gunicorn.glogging import Logger

TOKEN_IN_PATH = re.compile(r"(/auth/verify/|/auth/reset/|/settings/email/confirm/)[^/?\s]+")
OAUTH_CALLBACK_QUERY = re.compile(r"(/auth/oauth/[a-z]+/callback)\?\S*")
ENGINEIO_SID = re.compile(r"(/socket\.io/\?(?:[^\s#]*&)?sid=)[^&\s#]*")
REDACTED = "[redacted]"
RELOADER_REMINDER = "Reloader is on."
TRUE = {"1", "true", "yes", "on"}


def is_socket_poll(environ: dict) -> bool:
    """A long-polling request of an open Engine.IO session (its query names the sid)."""
    return environ.get("PATH_INFO", "").startswith("/socket.io/") and "sid=" in environ.get(
        "QUERY_STRING", ""
    )


def redact(text: str) -> str:
    text = TOKEN_IN_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    text = OAUTH_CALLBACK_QUERY.sub(lambda m: m.group(1) + "?" + REDACTED, text)
    return ENGINEIO_SID.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingLogger(Logger):
    log_socket_polls = os.environ.get("LOG_SOCKET_POLLS", "").strip().lower() in TRUE

    def access(self, resp, req, environ, request_time):
        failed = (resp.status_code or 500) >= 400
        if not self.log_socket_polls and is_socket_poll(environ) and not failed:
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms

    def warning(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith(RELOADER_REMINDER):
            self.info(msg, *args, **kwargs)
        else:
            super().warning(msg, *args, **kwargs)
