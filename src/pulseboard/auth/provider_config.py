"""OAuth/OIDC provider settings read from the environment (``<PROVIDER>_CLIENT_ID`` …)."""

from __future__ import annotations


def load_oauth_config(read) -> dict:
    """Config entries for the OAuth providers whose credentials are set.

    ``read`` is config._Reader; returns at least {"OAUTH_PROVIDERS": {name: settings}}.
    """
    return {"OAUTH_PROVIDERS": {}}
