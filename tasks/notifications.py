"""notifications queue: send a stored notification through its provider."""

from __future__ import annotations

from kirana import db, notifications
from tasks.app import app
from tasks.base import KiranaTask


@app.task(name="notifications.deliver", base=KiranaTask, soft_time_limit=20, time_limit=30)
def deliver(notification_id: str) -> str:
    return notifications.deliver_to_console(db.database(), notification_id)
