"""The webhook delivery ledger: each (image, callback URL, outcome) is delivered once.

Messages asking for a delivery can come more than once -- a re-upload of a
finished image asks again, RabbitMQ redelivers what a dead process held, a
publish is retried -- so the messages are not the record of what was sent:
this table is.  One row per (image, URL, outcome); its ``attempts`` count
says which attempt the chain of retry messages is at, and an attempt is
*claimed* before the POST with a conditional UPDATE that only one message can win:

* a fresh request (attempt 0) wins only for a row nobody has tried yet;
* a retry message for attempt n wins only while the row is at n and idle;
* a claim whose process died is taken over once its lease has run out, by
  the redelivered message (same attempt) -- anyone else is told ``busy`` and
  waits in RabbitMQ.

``claim`` answers ``claimed``, ``busy`` (come back later), ``finished``
(delivered or given up) or ``superseded`` (another message owns the chain);
``finish`` records the attempt's end.  The URL is the one recorded for the
image when the delivery is made, so whoever may change that URL (a tenant
check in front of uploads) also decides where deliveries go.
"""
import hashlib
import time

import sqlalchemy as sa

from imagepipe.storage.catalog import _insert_ignore, metadata

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"
FINAL_STATES = (DELIVERED, GAVE_UP)

deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("image_id", sa.String(32), sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("url_sha256", sa.String(64), primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("callback_url", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


class DeliveryLedger:
    def __init__(self, engine, clock=time.time):
        self.engine = engine
        self.clock = clock

    def claim(self, image_id, url, outcome, attempt, lease_seconds):
        """Try to take attempt ``attempt + 1`` of this delivery; see the module docstring."""
        now = self.clock()
        key = _key(image_id, url, outcome)
        with self.engine.begin() as conn:
            conn.execute(_insert_ignore(conn, deliveries).values(
                callback_url=url, state=PENDING, attempts=0, lease_until=None,
                created_at=now, updated_at=now, **key))
            idle = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
            won = conn.execute(
                deliveries.update()
                .where(*_matches(key), deliveries.c.state == PENDING, sa.or_(
                    sa.and_(deliveries.c.attempts == attempt, idle),
                    # our own earlier claim, left by a process that died
                    sa.and_(deliveries.c.attempts == attempt + 1, deliveries.c.lease_until < now)))
                .values(attempts=attempt + 1, lease_until=now + lease_seconds, updated_at=now)
                .returning(deliveries.c.attempts)
            ).first()
            if won is not None:
                return "claimed"
            row = conn.execute(sa.select(deliveries.c.state, deliveries.c.attempts,
                                         deliveries.c.lease_until).where(*_matches(key))).first()
        if row.state in FINAL_STATES:
            return "finished"
        if row.lease_until is not None and row.lease_until >= now:
            return "busy"
        return "superseded"

    def finish(self, image_id, url, outcome, attempt, state):
        """End claimed attempt ``attempt`` (1-based): ``delivered``, ``gave_up`` or ``pending`` (a retry follows)."""
        if state not in (PENDING, DELIVERED, GAVE_UP):
            raise ValueError("unknown delivery state {!r}".format(state))
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(*_matches(_key(image_id, url, outcome)), deliveries.c.attempts == attempt,
                       deliveries.c.state == PENDING)
                .values(state=state, lease_until=None, updated_at=self.clock()))

    def state(self, image_id, url, outcome):
        """``(state, attempts)`` of a delivery, or None if it was never asked for."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(deliveries.c.state, deliveries.c.attempts)
                               .where(*_matches(_key(image_id, url, outcome)))).first()
        return None if row is None else (row.state, row.attempts)


def _key(image_id, url, outcome):
    return {"image_id": image_id, "url_sha256": hashlib.sha256(url.encode()).hexdigest(),
            "outcome": outcome}


def _matches(key):
    return [getattr(deliveries.c, name) == value for name, value in key.items()]
