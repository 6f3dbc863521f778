"""Indexes for reading the event log's history by key and by time.

``GET /api/v1/events`` reads a topic's events in ``seq`` order.  With a
``keys`` filter it walks (topic, key, seq), so a widget asking for the latest
ticks of one symbol among hundreds reads those ticks and no others.  With a
time range it first finds the range's lowest and highest ``seq`` on
(topic, timestamp), so a page of the last hour does not start by reading the
week before it.

InnoDB builds both online (writes go on meanwhile); on a log of tens of
millions of rows that takes minutes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:00:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(op.f("ix_events_topic_key_seq"), "events", ["topic", "key", "seq"])
    op.create_index(op.f("ix_events_topic_timestamp"), "events", ["topic", "timestamp"])


def downgrade():
    op.drop_index(op.f("ix_events_topic_timestamp"), table_name="events")
    op.drop_index(op.f("ix_events_topic_key_seq"), table_name="events")
