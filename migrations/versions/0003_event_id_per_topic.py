"""An event id is unique within its topic, compared byte for byte.

The producer's id is the idempotency key within its topic: keyed on the id
alone, an event on one topic was silently dropped when another topic (another
producer's scope) had used the same id first.  On MySQL the id also leaves the
case-insensitive collation, which counted "evt-A" as a repeat of "evt-a".

Downgrading restores the global key, and fails if the log holds an id on two
topics (or two ids differing only in case): prune or delete those events first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:12:41.502817

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CASE_INSENSITIVE_ID = sa.String(length=128)
EXACT_ID = sa.String(length=128).with_variant(
    mysql.VARCHAR(length=128, collation="utf8mb4_bin"), "mysql", "mariadb"
)


def upgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "event_id", existing_type=CASE_INSENSITIVE_ID, type_=EXACT_ID, existing_nullable=False
        )
        batch_op.drop_constraint(batch_op.f("uq_events_event_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_events_topic_event_id"), ["topic", "event_id"]
        )


def downgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_events_topic_event_id"), type_="unique")
        batch_op.alter_column(
            "event_id", existing_type=EXACT_ID, type_=CASE_INSENSITIVE_ID, existing_nullable=False
        )
        batch_op.create_unique_constraint(batch_op.f("uq_events_event_id"), ["event_id"])
