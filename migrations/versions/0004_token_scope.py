"""A token's scope: "produce" (publish to its topics) or "read" (only read them).

Tokens issued before this revision were all for producers, so they keep that
scope.  Downgrading drops the column: read tokens then become producer tokens,
so revoke or delete them first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=16), server_default="produce", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("scope")
