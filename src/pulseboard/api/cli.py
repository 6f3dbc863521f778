"""``flask tokens …``: ingest API tokens for producers."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken
from .tokens import TokenError, issue_token, revoke

tokens_cli = AppGroup("tokens", help="Create, list and revoke ingest API tokens.")


@tokens_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the token.")
@click.option("--topics", required=True, help="Comma-separated topic patterns, e.g. 'market.*'")
def create_token(name: str, topics: str) -> None:
    """Create a token and print it (it is shown only this once)."""
    try:
        record, clear = issue_token(db.session, name, topics.split(","))
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token {record.id} ({record.name}) for topics {record.topics}:", err=True)
    click.echo(clear)


@tokens_cli.command("list")
def list_tokens() -> None:
    """List tokens (never their secret)."""
    for token in db.session.scalars(select(ApiToken).order_by(ApiToken.id)):
        state = "revoked" if token.revoked_at else "active"
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        click.echo(f"{token.id}\t{token.prefix}…\t{state}\t{token.name}\t{token.topics}\t{used}")


@tokens_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke a token by its id; it stops working at once."""
    try:
        record = revoke(db.session, token_id)
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"revoked token {record.id} ({record.name})")
