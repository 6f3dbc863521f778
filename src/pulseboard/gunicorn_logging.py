"""gunicorn's logs without the secrets some URLs carry, and without false alarms.

Verification, reset and email-change links hold a token in their path,
OAuth callbacks a code and state in their query, and a long-polling request
its Engine.IO sid, the session's only credential after the handshake; none of
that may reach a log (Nginx's access log follows the same rules).
``make dev`` asks for the reloader on purpose, so gunicorn's reminder that it
is on is a note there, not a warning.
"""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

TOKEN_IN_PATH = re.compile(r"(/auth/verify/|/auth/reset/|/settings/email/confirm/)[^/?\s]+")
OAUTH_CALLBACK_QUERY = re.compile(r"(/auth/oauth/[a-z]+/callback)\?\S*")
ENGINEIO_SID = re.compile(r"(/socket\.io/\?(?:[^\s#]*&)?sid=)[^&\s#]*")
REDACTED = "[redacted]"
RELOADER_REMINDER = "Reloader is on."


def redact(text: str) -> str:
    text = TOKEN_IN_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    text = OAUTH_CALLBACK_QUERY.sub(lambda m: m.group(1) + "?" + REDACTED, text)
    return ENGINEIO_SID.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingLogger(Logger):
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
