"""``flask tokens …``: API tokens for producers (ingest) and readers (Server-Sent Events)."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken
from .tokens import PRODUCE, READ, TokenError, issue_token, revoke

tokens_cli = AppGroup("tokens", help="Create, list and revoke API tokens.")


@tokens_cli.command("create")
@click.option("--name", help="Who or what uses the token (required for producer tokens).")
@click.option("--topics", help="Comma-separated patterns it may publish to, e.g. 'market.*'")
@click.option("--read", "read", help="Comma-separated patterns it may only read, e.g. 'market.*'")
def create_token(name: str | None, topics: str | None, read: str | None) -> None:
    """Create a token and print it (it is shown only this once).

    --topics makes a producer token (the ingest API); --read a token that may only
    read its topics (the Server-Sent Events stream)."""
    if (topics is None) == (read is None):
        raise click.UsageError("give either --topics (a producer token) or --read (a reader's)")
    if topics is not None and not name:
        raise click.UsageError("a producer token needs --name")
    scope = PRODUCE if topics is not None else READ
    try:
        record, clear = issue_token(
            db.session, name or "reader", (topics or read).split(","), scope=scope
        )
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"token {record.id} ({record.name}) to {record.scope} topics {record.topics}:", err=True
    )
    click.echo(clear)


@tokens_cli.command("list")
def list_tokens() -> None:
    """List tokens (never their secret)."""
    for token in db.session.scalars(select(ApiToken).order_by(ApiToken.id)):
        state = "revoked" if token.revoked_at else "active"
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        click.echo(
            f"{token.id}\t{token.prefix}…\t{state}\t{token.scope}\t{token.name}\t"
            f"{token.topics}\t{used}"
        )


@tokens_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke a token by its id; it stops working at once."""
    try:
        record = revoke(db.session, token_id)
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"revoked token {record.id} ({record.name})")
