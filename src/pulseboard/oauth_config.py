"""OAuth/OIDC provider settings read from the environment (``<PROVIDER>_CLIENT_ID`` …).

A provider is on only when its credentials are set; half a set of credentials
stops start-up with the missing variable named.  Every endpoint can be pointed
elsewhere (``<PROVIDER>_SERVER_METADATA_URL``, ``<PROVIDER>_TOKEN_URL`` …), so a
provider on loopback can stand in for the real one in tests.

Variable names are spelled out in full (``read.str("GOOGLE_CLIENT_ID")``) rather
than built from the provider's name: the .env.example test finds them by text.
"""

from __future__ import annotations

from pathlib import Path

from .config_error import ConfigError

# Provider name → (label on buttons, Bootstrap Icons name).
PROVIDER_LOOK = {
    "google": ("Google", "google"),
    "facebook": ("Facebook", "facebook"),
    "github": ("GitHub", "github"),
    "microsoft": ("Microsoft", "microsoft"),
    "apple": ("Apple", "apple"),
}
FACEBOOK_GRAPH = "https://graph.facebook.com/v19.0"
# Microsoft's tenant aliases: any tenant may sign in, so the id_token's issuer
# names the user's own tenant and is checked against the issuer template.
MICROSOFT_TENANT_ALIASES = ("common", "organizations", "consumers")


def load_oauth_config(read) -> dict:
    """Config entries for the OAuth providers whose credentials are set.

    ``read`` is config._Reader; returns {"OAUTH_PROVIDERS": {name: settings}}.
    """

    def pair(prefix: str, client_id: str | None, secret: str | None) -> bool:
        if client_id and not secret:
            raise ConfigError(f"{prefix}_CLIENT_SECRET is not set but {prefix}_CLIENT_ID is")
        if secret and not client_id:
            raise ConfigError(f"{prefix}_CLIENT_ID is not set but {prefix}_CLIENT_SECRET is")
        return bool(client_id)

    providers: dict[str, dict] = {}

    google_id, google_secret = read.str("GOOGLE_CLIENT_ID"), read.str("GOOGLE_CLIENT_SECRET")
    if pair("GOOGLE", google_id, google_secret):
        providers["google"] = _oidc(
            "google",
            google_id,
            google_secret,
            read.str(
                "GOOGLE_SERVER_METADATA_URL",
                "https://accounts.google.com/.well-known/openid-configuration",
            ),
            scope="openid email profile",
        )

    ms_id, ms_secret = read.str("MICROSOFT_CLIENT_ID"), read.str("MICROSOFT_CLIENT_SECRET")
    if pair("MICROSOFT", ms_id, ms_secret):
        tenant = read.str("MICROSOFT_TENANT", "common")
        providers["microsoft"] = _oidc(
            "microsoft",
            ms_id,
            ms_secret,
            read.str(
                "MICROSOFT_SERVER_METADATA_URL",
                f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration",
            ),
            scope="openid email profile",
            tenant=tenant,
        )

    github_id, github_secret = read.str("GITHUB_CLIENT_ID"), read.str("GITHUB_CLIENT_SECRET")
    if pair("GITHUB", github_id, github_secret):
        providers["github"] = _oauth2(
            "github",
            github_id,
            github_secret,
            authorize_url=read.str(
                "GITHUB_AUTHORIZE_URL", "https://github.com/login/oauth/authorize"
            ),
            token_url=read.str("GITHUB_TOKEN_URL", "https://github.com/login/oauth/access_token"),
            userinfo_url=read.str("GITHUB_USERINFO_URL", "https://api.github.com/user"),
            emails_url=read.str("GITHUB_EMAILS_URL", "https://api.github.com/user/emails"),
            scope="read:user user:email",
        )

    fb_id, fb_secret = read.str("FACEBOOK_CLIENT_ID"), read.str("FACEBOOK_CLIENT_SECRET")
    if pair("FACEBOOK", fb_id, fb_secret):
        providers["facebook"] = _oauth2(
            "facebook",
            fb_id,
            fb_secret,
            authorize_url=read.str(
                "FACEBOOK_AUTHORIZE_URL", "https://www.facebook.com/v19.0/dialog/oauth"
            ),
            token_url=read.str("FACEBOOK_TOKEN_URL", f"{FACEBOOK_GRAPH}/oauth/access_token"),
            userinfo_url=read.str(
                "FACEBOOK_USERINFO_URL", f"{FACEBOOK_GRAPH}/me?fields=id,name,email"
            ),
            scope="email public_profile",
        )

    apple_id = read.str("APPLE_CLIENT_ID")
    apple = {
        "APPLE_TEAM_ID": read.str("APPLE_TEAM_ID"),
        "APPLE_KEY_ID": read.str("APPLE_KEY_ID"),
        "APPLE_PRIVATE_KEY": read.str("APPLE_PRIVATE_KEY"),
    }
    key_path = read.str("APPLE_PRIVATE_KEY_PATH")
    if apple_id:
        if not apple["APPLE_PRIVATE_KEY"] and key_path:
            apple["APPLE_PRIVATE_KEY"] = _read_key_file(key_path)
        for name, value in apple.items():
            if not value:
                hint = " (or APPLE_PRIVATE_KEY_PATH)" if name == "APPLE_PRIVATE_KEY" else ""
                raise ConfigError(f"{name}{hint} is not set but APPLE_CLIENT_ID is")
        _check_ec_key(apple["APPLE_PRIVATE_KEY"])
        providers["apple"] = _oidc(
            "apple",
            apple_id,
            None,
            read.str(
                "APPLE_SERVER_METADATA_URL",
                "https://appleid.apple.com/.well-known/openid-configuration",
            ),
            scope="name email",
            team_id=apple["APPLE_TEAM_ID"],
            key_id=apple["APPLE_KEY_ID"],
            private_key=apple["APPLE_PRIVATE_KEY"].replace("\\n", "\n"),
        )
    elif any(apple.values()) or key_path:
        raise ConfigError("APPLE_CLIENT_ID is not set but other APPLE_* variables are")

    return {"OAUTH_PROVIDERS": providers}


def _base(name: str, client_id: str, client_secret: str | None, kind: str, scope: str) -> dict:
    label, icon = PROVIDER_LOOK[name]
    return {
        "kind": kind,
        "label": label,
        "icon": icon,
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": scope,
    }


def _oidc(name, client_id, client_secret, metadata_url, scope, **extra) -> dict:
    return {
        **_base(name, client_id, client_secret, "oidc", scope),
        "server_metadata_url": metadata_url,
        **extra,
    }


def _oauth2(name, client_id, client_secret, scope, **endpoints) -> dict:
    return {**_base(name, client_id, client_secret, "oauth2", scope), **endpoints}


def _read_key_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise ConfigError(
            f"APPLE_PRIVATE_KEY_PATH {path!r} cannot be read: {error.strerror}"
        ) from None


def _check_ec_key(pem: str) -> None:
    """Fail at start-up, not at the first Apple sign-in, when the key is unusable."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.replace("\\n", "\n").encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            "APPLE_PRIVATE_KEY must be the .p8 key from Apple (PEM text of an EC private key)"
        )
