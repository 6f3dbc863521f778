"""Absolute links that leave the site: mail and OAuth redirect URIs.

They are built on the configured ``PUBLIC_URL``, never on the request's Host
(or X-Forwarded-Host): a visitor chooses that header, so a link built from it
can send a password-reset token to the visitor's own server.
"""

from __future__ import annotations

from flask import current_app, url_for


def external_url(endpoint: str, **values) -> str:
    return current_app.config["PUBLIC_URL"] + url_for(endpoint, **values)
