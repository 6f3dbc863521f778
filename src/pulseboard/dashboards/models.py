"""A dashboard: its owner, its name, whether others may view it, and its widgets."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import MYSQL_TABLE_OPTIONS, UTCDateTime, utcnow
from ..extensions import db
from ..models import LongText


class Dashboard(db.Model):
    __tablename__ = "dashboards"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # Read-only for every signed-in user; each still sees only the topics they may read.
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # A list of widgets (widgets.Widget.as_dict()), in the order they are shown.
    widgets_json: Mapped[str] = mapped_column(LongText, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    owner = relationship("User", lazy="joined")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def widgets(self) -> list[dict]:
        return json.loads(self.widgets_json or "[]")

    @widgets.setter
    def widgets(self, value: list[dict]) -> None:
        self.widgets_json = json.dumps(value, separators=(",", ":"))
