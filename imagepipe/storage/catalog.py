"""Image metadata: one row per image, one per rendition (SQLAlchemy Core).

The embedded default is SQLite in ``STORAGE_ROOT``; any SQLAlchemy URL works.

Status only moves forward -- pending -> processing -> done | failed -- and every
transition is a single conditional UPDATE, so concurrent or repeated
deliveries of the same job can neither move an image backwards nor lose an
update.  The one way back is a re-upload of the same bytes after a failure,
which resets the image to ``pending`` so it is tried again.
"""
import os
import secrets
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from imagepipe.errors import BadRequest, NotFound
from imagepipe.records import DONE, FAILED, PENDING, PROCESSING, STATUSES, UNFINISHED, isoformat

metadata = sa.MetaData()

images = sa.Table(
    "images", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("mime_type", sa.String(64), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("frames", sa.Integer, nullable=False, default=1),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # where to POST the status when the image is finished (imagepipe.webhooks)
    sa.Column("callback_url", sa.Text, nullable=True),
    # the focal point given at upload (fractions), for cover crops; null: automatic
    sa.Column("focus_x", sa.Float, nullable=True),
    sa.Column("focus_y", sa.Float, nullable=True),
    # the API key's tenant that uploaded it (imagepipe.web.keys); None: no tenants
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Index("ix_images_tenant_created_at", "tenant", "created_at"),
)

# secrets every storage process of one catalog shares (the grant signing key)
store_secrets = sa.Table(
    "store_secrets", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
)

variants = sa.Table(
    "variants", metadata,
    sa.Column("image_id", sa.String(32), sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("preset", sa.String(32), primary_key=True),
    sa.Column("format", sa.String(16), primary_key=True),
    sa.Column("mime_type", sa.String(64), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("writes", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.Float, nullable=False),
    # the format's place in its preset's list (0: preferred; negotiation order)
    sa.Column("rank", sa.Integer, nullable=False, default=0),
    # false for renditions stored before formats were part of blob keys
    sa.Column("format_in_key", sa.Boolean, nullable=False, default=True),
    sa.Column("placeholder", sa.String(64), nullable=True),  # base64 ThumbHash
    sa.Column("color", sa.String(7), nullable=True),         # dominant colour, #rrggbb
    sa.Column("focus_x", sa.Float, nullable=True),           # the point a cover crop centres on
    sa.Column("focus_y", sa.Float, nullable=True),
    sa.Column("frames", sa.Integer, nullable=False, default=1),
)


def make_engine(url):
    if url.startswith(("postgresql://", "postgres://")):
        # the psycopg (3) driver, whatever the URL's scheme says
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _tune_sqlite)
        _make_sqlite_folder(engine.url.database)
    return engine


def _make_sqlite_folder(database):
    # With blobs in S3 nothing else creates STORAGE_ROOT for the default file.
    if database and database != ":memory:" and not database.startswith("file:"):
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)


MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant: serialises schema upgrades of storage processes sharing a database.
_MIGRATION_LOCK = 0x696D6770


def migrate(engine):
    """Bring the schema to the newest revision (Alembic), once per database."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _tune_sqlite(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; FULL keeps a committed upload
    # through a power cut, which the 202 answer promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Catalog:
    def __init__(self, engine, clock=time.time):
        self.engine = engine
        self.clock = clock

    @classmethod
    def from_url(cls, url):
        catalog = cls(make_engine(url))
        migrate(catalog.engine)
        return catalog

    # -- images -----------------------------------------------------------

    def secret(self, name):
        """A random secret shared by every process of this catalog, made on first use."""
        with self.engine.begin() as conn:
            conn.execute(_insert_ignore(conn, store_secrets).values(
                name=name, value=secrets.token_hex(32)))
            value = conn.execute(sa.select(store_secrets.c.value)
                                 .where(store_secrets.c.name == name)).scalar_one()
        return bytes.fromhex(value)

    def tenant_bytes(self, tenant):
        """Bytes of every original and rendition the tenant's images hold."""
        with self.engine.connect() as conn:
            originals = conn.execute(sa.select(sa.func.sum(images.c.bytes))
                                     .where(images.c.tenant == tenant)).scalar()
            renditions = conn.execute(
                sa.select(sa.func.sum(variants.c.bytes))
                .select_from(variants.join(images, variants.c.image_id == images.c.id))
                .where(images.c.tenant == tenant)).scalar()
        return int(originals or 0) + int(renditions or 0)

    def add_image(self, image_id, sha256, info, size, callback_url=None, tenant=None):
        """Record an uploaded original; return ``(record, created)``.

        A re-upload of an image that failed starts it afresh; any other
        re-upload leaves the existing record untouched, except that a
        ``callback_url`` or ``focus`` it names replaces the previous one (the
        latest wins; renditions already made keep their crop until reprocessed).
        """
        now = self.clock()
        focus_x, focus_y = info.get("focus") or (None, None)
        with self.engine.begin() as conn:
            inserted = conn.execute(
                _insert_ignore(conn, images).values(
                    id=image_id, sha256=sha256, format=info["format"],
                    mime_type=info["mime_type"], width=info["width"],
                    height=info["height"], frames=info.get("frames", 1),
                    bytes=size, status=PENDING, error=None, attempts=0,
                    created_at=now, updated_at=now, callback_url=callback_url, tenant=tenant,
                    focus_x=focus_x, focus_y=focus_y,
                ).returning(images.c.id)
            ).first() is not None
            if not inserted and callback_url:
                conn.execute(images.update().where(images.c.id == image_id)
                             .values(callback_url=callback_url))
            if not inserted and focus_x is not None:
                conn.execute(images.update().where(images.c.id == image_id)
                             .values(focus_x=focus_x, focus_y=focus_y))
            if not inserted:
                conn.execute(
                    images.update()
                    .where(images.c.id == image_id, images.c.status == FAILED)
                    .values(status=PENDING, error=None, attempts=0, updated_at=now)
                )
        return self.get_image(image_id), inserted

    def get_image(self, image_id, tenant=None):
        """The image's record; ``NotFound`` if there is none -- or it is another tenant's."""
        with self.engine.connect() as conn:
            row = conn.execute(
                images.select().where(images.c.id == image_id)
            ).mappings().first()
            if row is None or (tenant is not None and row["tenant"] != tenant):
                raise NotFound("no image with id {!r}".format(image_id))
            variant_rows = conn.execute(
                variants.select()
                .where(variants.c.image_id == image_id)
                .order_by(variants.c.preset, variants.c.rank, variants.c.format)
            ).mappings().all()
        return _image_record(row, variant_rows)

    def list_images(self, limit=20, cursor=None, tenant=None):
        """Newest first (only ``tenant``'s, if given); return ``(records, next cursor or None)``.

        Keyset pagination on (created_at, id): pages stay stable while new
        images arrive, and images uploaded in the same instant are not lost.
        """
        query = images.select().order_by(images.c.created_at.desc(), images.c.id).limit(limit + 1)
        if tenant is not None:
            query = query.where(images.c.tenant == tenant)
        if cursor is not None:
            created_at, image_id = _parse_cursor(cursor)
            query = query.where(sa.or_(
                images.c.created_at < created_at,
                sa.and_(images.c.created_at == created_at, images.c.id > image_id)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = "{!r}_{}".format(page[-1]["created_at"], page[-1]["id"])
        return [self.get_image(row["id"]) for row in page], next_cursor

    def start_processing(self, image_id, retry_failed=False):
        """Claim the image for a processing attempt and count the attempt.

        Counting here, not in the message, also catches attempts that crashed
        the worker and were redelivered by the broker.  ``retry_failed`` (an
        operator's explicit reprocess or dead-letter replay) also restarts a
        failed image, with a fresh attempt count.
        """
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                images.update()
                .where(images.c.id == image_id, images.c.status.in_(UNFINISHED))
                .values(status=PROCESSING, attempts=images.c.attempts + 1, updated_at=now)
            )
            if retry_failed:
                conn.execute(
                    images.update()
                    .where(images.c.id == image_id, images.c.status == FAILED)
                    .values(status=PROCESSING, attempts=1, error=None, updated_at=now)
                )
        return self.get_image(image_id)

    def finish(self, image_id, status, error=None):
        """Move an unfinished image to done/failed; a finished one stays as it is."""
        if status not in (DONE, FAILED):
            raise ValueError("finish() takes done or failed, not {!r}".format(status))
        with self.engine.begin() as conn:
            self._finish(conn, image_id, status, error)
        return self.get_image(image_id)

    def complete(self, image_id, new_variants, replace=False):
        """Record renditions (``[(preset, meta), ...]``, one per preset and
        format) and finish the image as done, in one transaction; return the record."""
        with self.engine.begin() as conn:
            for preset, meta in new_variants:
                self._add_variant(conn, image_id, preset, meta, replace)
            self._finish(conn, image_id, DONE, None)
        return self.get_image(image_id)

    def _finish(self, conn, image_id, status, error):
        conn.execute(
            images.update()
            .where(images.c.id == image_id, images.c.status.in_(UNFINISHED))
            .values(status=status, error=error if status == FAILED else None,
                    updated_at=self.clock())
        )

    def stalled_image_ids(self, older_than, limit=100):
        """Unfinished images untouched for ``older_than`` seconds."""
        cutoff = self.clock() - older_than
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(images.c.id)
                .where(images.c.status.in_(UNFINISHED), images.c.updated_at < cutoff)
                .order_by(images.c.updated_at)
                .limit(limit)
            ).scalars())

    def touch(self, image_id):
        with self.engine.begin() as conn:
            conn.execute(
                images.update().where(images.c.id == image_id)
                .values(updated_at=self.clock())
            )

    def stored_totals(self):
        """``{"images": {status: count}, "bytes": {"original": n, "variant": n}}``.

        Two aggregate queries (index on status; a scan of the rows for the
        sums), run per metrics scrape.
        """
        with self.engine.connect() as conn:
            counts = dict(conn.execute(
                sa.select(images.c.status, sa.func.count()).group_by(images.c.status)).all())
            original_bytes = conn.execute(sa.select(sa.func.sum(images.c.bytes))).scalar()
            variant_bytes = conn.execute(sa.select(sa.func.sum(variants.c.bytes))).scalar()
        return {
            "images": {status: int(counts.get(status, 0)) for status in STATUSES},
            "bytes": {"original": int(original_bytes or 0), "variant": int(variant_bytes or 0)},
        }

    # -- renditions -------------------------------------------------------

    def _add_variant(self, conn, image_id, preset, meta, replace):
        focus_x, focus_y = meta.get("focus") or (None, None)
        values = dict(
            mime_type=meta["mime_type"],
            width=meta["width"], height=meta["height"], bytes=meta["bytes"],
            sha256=meta["sha256"], rank=meta.get("rank", 0), format_in_key=True,
            placeholder=meta.get("placeholder") or None, color=meta.get("color") or None,
            focus_x=focus_x, focus_y=focus_y, frames=meta.get("frames", 1),
        )
        inserted = conn.execute(
            _insert_ignore(conn, variants).values(
                image_id=image_id, preset=preset, format=meta["format"], writes=1,
                created_at=self.clock(), **values).returning(variants.c.preset)
        ).first() is not None
        if not inserted and replace:
            conn.execute(
                variants.update()
                .where(variants.c.image_id == image_id, variants.c.preset == preset,
                       variants.c.format == meta["format"])
                .values(writes=variants.c.writes + 1, created_at=self.clock(), **values)
            )
            return True
        return inserted


def _parse_cursor(cursor):
    try:
        created_at, image_id = str(cursor).split("_", 1)
        return float(created_at), image_id
    except ValueError:
        raise BadRequest("invalid cursor {!r}".format(str(cursor)[:80])) from None


def _insert_ignore(conn, table):
    # INSERT .. ON CONFLICT DO NOTHING, spelled per dialect; callers add
    # RETURNING to learn whether the row was new (rowcount is not portable).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def _image_record(row, variant_rows):
    return {
        "id": row["id"],
        "status": row["status"],
        "error": row["error"],
        "attempts": row["attempts"],
        "original": {
            "format": row["format"],
            "mime_type": row["mime_type"],
            "width": row["width"],
            "height": row["height"],
            "frames": row["frames"],
            "bytes": row["bytes"],
            "sha256": row["sha256"],
        },
        "variants": _variants_by_preset(variant_rows),
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
        "callback_url": row["callback_url"],
        "tenant": row["tenant"],
        "focus": _point(row["focus_x"], row["focus_y"]),
    }


def _variants_by_preset(variant_rows):
    """``{preset: preferred format's meta + "formats": {format: meta}}``.

    Rows come ordered by preset and rank, so each preset's first row is its
    preferred format, which also describes the preset as a whole (the shape
    from before presets had several formats).
    """
    by_preset = {}
    for variant in variant_rows:
        meta = {
            "format": variant["format"],
            "mime_type": variant["mime_type"],
            "width": variant["width"],
            "height": variant["height"],
            "bytes": variant["bytes"],
            "sha256": variant["sha256"],
            "writes": variant["writes"],
            "created_at": isoformat(variant["created_at"]),
            "rank": variant["rank"],
            "format_in_key": variant["format_in_key"],
            "placeholder": variant["placeholder"],
            "color": variant["color"],
            "focus": _point(variant["focus_x"], variant["focus_y"]),
            "frames": variant["frames"],
        }
        entry = by_preset.setdefault(variant["preset"], dict(meta, formats={}))
        entry["formats"][variant["format"]] = meta
    return by_preset


def _point(x, y):
    return None if x is None else [x, y]
