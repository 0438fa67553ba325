"""The catalog: one SQLite file (WAL) that remembers images, their features, suggestions, user crops, users
and model versions. sqlite-utils does the table work; schema changes are named migrations, applied in order.

Default location: ``$PIC_CATALOG``, else ``$XDG_DATA_HOME/pic/catalog.db`` (``~/.local/share/pic``). Every
command takes ``--catalog PATH``. One process writes at a time (WAL readers never block); writers wait up to
``BUSY_TIMEOUT_MS`` for each other, so a batch and the watcher can share a catalog.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from pic_plugin.core.geometry import Box

BUSY_TIMEOUT_MS = 30_000


def default_path() -> Path:
    env = os.environ.get("PIC_CATALOG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pic" / "catalog.db"


# --- migrations ------------------------------------------------------------------------------------------------

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS.append((name, fn))
        return fn

    return register


@migration("0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,      -- absolute path (surrogate-escaped if not UTF-8)
            file_size INTEGER,
            mtime_ns INTEGER,
            content_key TEXT,               -- sampled content hash: identity across moves and renames
            width INTEGER,                  -- displayed frame, pixels
            height INTEGER,
            orientation INTEGER,
            format TEXT,
            scanned_at REAL,
            error TEXT                      -- last per-file error, NULL when fine
        );
        CREATE INDEX images_content_key ON images(content_key);

        CREATE TABLE features (
            content_key TEXT NOT NULL,
            version TEXT NOT NULL,
            data BLOB NOT NULL,
            created REAL,
            PRIMARY KEY (content_key, version)
        );

        CREATE TABLE suggestions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            user TEXT NOT NULL DEFAULT '',  -- '' = no user (generic prior)
            ratio TEXT NOT NULL,
            model TEXT NOT NULL,
            crop TEXT NOT NULL,             -- JSON [l, t, r, b], displayed frame
            score REAL,
            alternatives TEXT,              -- JSON [{"crop": [...], "score": s}, ...]
            top_k INTEGER,
            created REAL,
            written TEXT,                   -- JSON: what was written where (targets, darktable entry, ...)
            status TEXT NOT NULL DEFAULT 'suggested',  -- suggested | accepted | adjusted | rejected
            UNIQUE (image_id, user, ratio)
        );

        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            attributes TEXT NOT NULL DEFAULT '{}',
            created REAL
        );

        CREATE TABLE user_crops (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            content_key TEXT NOT NULL,
            path TEXT,
            crop TEXT NOT NULL,             -- JSON [l, t, r, b], displayed frame
            source TEXT NOT NULL,           -- darktable | digikam | crs | cli | review | ...
            weight REAL NOT NULL DEFAULT 1.0,  -- 1 = the user's own crop; less for an accepted suggestion
            detail TEXT,
            created REAL,
            UNIQUE (user, content_key, source)
        );
        CREATE INDEX user_crops_user ON user_crops(user);

        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            version INTEGER NOT NULL,
            created REAL,
            data BLOB,
            metrics TEXT,
            note TEXT,
            active INTEGER NOT NULL DEFAULT 0,
            UNIQUE (user, version)
        );
        """
    )


@migration("0002_watch")
def _watch(db: sqlite_utils.Database) -> None:
    # The watcher's persisted work (pic_plugin/library/watch/state.py): a restart after a crash resumes from here.
    db.executescript(
        """
        CREATE TABLE watch_queue (
            path BLOB PRIMARY KEY,          -- os.fsencode(absolute path): exact even for non-UTF-8 names
            reason TEXT NOT NULL,           -- event | sidecar | scan | refresh
            priority INTEGER NOT NULL,      -- lower first: 0 live events, 1 scan, 2 refresh after a fine-tune
            attempts INTEGER NOT NULL DEFAULT 0,
            not_before REAL NOT NULL DEFAULT 0,
            queued REAL NOT NULL,
            error TEXT
        );
        CREATE INDEX watch_queue_next ON watch_queue(priority, not_before, queued);

        CREATE TABLE watch_state (
            key TEXT PRIMARY KEY,           -- roots, scan:<root>, finetune:<user>, daemon, counters
            value TEXT NOT NULL,            -- JSON
            updated REAL
        );

        CREATE TABLE watch_log (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            level TEXT NOT NULL,            -- info | warning | error
            path TEXT,
            message TEXT NOT NULL
        );
        """
    )


@migration("0003_suggestion_subject")
def _suggestion_subject(db: sqlite_utils.Database) -> None:
    # What pic framed (issue 13): the review page draws it. NULL for rows written before and when pic saw none.
    db.executescript(
        """
        ALTER TABLE suggestions ADD COLUMN subject TEXT;       -- JSON [l, t, r, b], displayed frame, or NULL
        ALTER TABLE suggestions ADD COLUMN subject_kind TEXT;  -- person | dog | face | ... or NULL (unknown)
        """
    )


# --- the catalog -----------------------------------------------------------------------------------------------


@dataclass
class ImageRecord:
    id: int
    path: str
    file_size: int | None
    mtime_ns: int | None
    content_key: str | None
    width: int | None
    height: int | None
    orientation: int | None
    format: str | None
    error: str | None


def path_key(path: str | os.PathLike[str]) -> str:
    """How a path is stored: absolute, and round-trippable even when the name is not valid UTF-8."""
    return os.path.abspath(os.fspath(path))


def _storable(text: str) -> str:
    # Names with undecodable bytes carry surrogates (os.fsdecode); SQLite needs valid UTF-8.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if _has_surrogates(text) else text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Catalog:
    def __init__(self, path: str | os.PathLike[str] | None = None, readonly: bool = False) -> None:
        """Open (creating and migrating unless ``readonly``) the catalog at ``path`` (default: ``default_path()``)."""
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        memory = str(self.path) == ":memory:"
        if readonly and not memory:
            uri = f"file:{_uri_path(self.path)}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        else:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            if not memory:
                self.db.enable_wal()
            self._migrate()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {row[0] for row in self.db.execute("SELECT name FROM migrations").fetchall()}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction():
                fn(self.db)
                self.db.execute("INSERT INTO migrations (name, applied) VALUES (?, ?)", [name, time.time()])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def migrations_applied(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name").fetchall()]

    # --- images ---

    def image(self, path: str | os.PathLike[str]) -> ImageRecord | None:
        row = self.db.execute(
            "SELECT id, path, file_size, mtime_ns, content_key, width, height, orientation, format, error "
            "FROM images WHERE path = ?",
            [_storable(path_key(path))],
        ).fetchone()
        return ImageRecord(*row) if row else None

    def image_by_id(self, image_id: int) -> ImageRecord | None:
        row = self.db.execute(
            "SELECT id, path, file_size, mtime_ns, content_key, width, height, orientation, format, error "
            "FROM images WHERE id = ?",
            [image_id],
        ).fetchone()
        return ImageRecord(*row) if row else None

    def images_with_content(self, content_key: str) -> list[ImageRecord]:
        rows = self.db.execute(
            "SELECT id, path, file_size, mtime_ns, content_key, width, height, orientation, format, error "
            "FROM images WHERE content_key = ?",
            [content_key],
        ).fetchall()
        return [ImageRecord(*r) for r in rows]

    def upsert_image(self, path: str | os.PathLike[str], **fields: Any) -> int:
        key = _storable(path_key(path))
        fields = {**fields, "scanned_at": time.time()}
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        with self.transaction():
            self.db.execute(
                f"INSERT INTO images (path, {cols}) VALUES (?, {marks}) ON CONFLICT(path) DO UPDATE SET {updates}",
                [key, *fields.values()],
            )
            row = self.db.execute("SELECT id FROM images WHERE path = ?", [key]).fetchone()
        return int(row[0])

    def forget_image(self, path: str | os.PathLike[str]) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM images WHERE path = ?", [_storable(path_key(path))])

    def image_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    # --- features ---

    def features(self, content_key: str, version: str) -> bytes | None:
        row = self.db.execute(
            "SELECT data FROM features WHERE content_key = ? AND version = ?", [content_key, version]
        ).fetchone()
        return bytes(row[0]) if row else None

    def put_features(self, content_key: str, version: str, data: bytes) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO features (content_key, version, data, created) VALUES (?, ?, ?, ?)",
                [content_key, version, data, time.time()],
            )

    # --- suggestions ---

    def save_suggestion(
        self,
        image_id: int,
        user: str | None,
        ratio: str,
        model: str,
        crop: Box,
        score: float,
        alternatives: list[dict[str, Any]],
        top_k: int,
        written: dict[str, Any] | None = None,
        subject: Box | None = None,
        subject_kind: str | None = None,
    ) -> int:
        with self.transaction():
            self.db.execute(
                "INSERT INTO suggestions (image_id, user, ratio, model, crop, score, alternatives, top_k, created,"
                " written, subject, subject_kind, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'suggested')"
                " ON CONFLICT(image_id, user, ratio) DO UPDATE SET model = excluded.model, crop = excluded.crop,"
                " score = excluded.score, alternatives = excluded.alternatives, top_k = excluded.top_k,"
                " created = excluded.created, written = excluded.written, subject = excluded.subject,"
                " subject_kind = excluded.subject_kind, status = 'suggested'",
                [
                    image_id,
                    user or "",
                    ratio,
                    model,
                    json.dumps(crop.as_list()),
                    score,
                    json.dumps(alternatives),
                    top_k,
                    time.time(),
                    json.dumps(written or {}),
                    json.dumps(subject.rounded(4).as_list()) if subject is not None else None,
                    subject_kind,
                ],
            )
            row = self.db.execute(
                "SELECT id FROM suggestions WHERE image_id = ? AND user = ? AND ratio = ?", [image_id, user or "", ratio]
            ).fetchone()
        return int(row[0])

    def suggestion(self, image_id: int, user: str | None, ratio: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT * FROM suggestions WHERE image_id = ? AND user = ? AND ratio = ?", [image_id, user or "", ratio]
            )
        )
        return _decode_suggestion(rows[0]) if rows else None

    def suggestions_for_image(self, image_id: int) -> list[dict[str, Any]]:
        return [_decode_suggestion(r) for r in self.db.query("SELECT * FROM suggestions WHERE image_id = ?", [image_id])]

    def pending_darktable(self) -> list[tuple[str, dict[str, Any]]]:
        """(image path, suggestion) of every suggestion that waits for the darktable plugin (library route)."""
        rows = self.db.query(
            "SELECT i.path AS image_path, s.* FROM suggestions s JOIN images i ON i.id = s.image_id"
            " WHERE json_extract(s.written, '$.darktable_library') = 'pending' ORDER BY i.path"
        )
        out = []
        for r in rows:
            r = dict(r)
            path = r.pop("image_path")
            out.append((path, _decode_suggestion(r)))
        return out

    def set_suggestion_written(self, suggestion_id: int, written: dict[str, Any]) -> None:
        """Replace what a suggestion records as written (e.g. the sidecar stamps the watcher has seen)."""
        with self.transaction():
            self.db.execute("UPDATE suggestions SET written = ? WHERE id = ?", [json.dumps(written), suggestion_id])

    def set_suggestion_status(self, suggestion_id: int, status: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE suggestions SET status = ? WHERE id = ?", [status, suggestion_id])

    # --- users ---

    def user(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT name, attributes, created FROM users WHERE name = ?", [name]).fetchone()
        if not row:
            return None
        return {"name": row[0], "attributes": json.loads(row[1] or "{}"), "created": row[2]}

    def ensure_user(self, name: str) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO users (name, attributes, created) VALUES (?, '{}', ?)", [name, time.time()]
            )

    def set_user_attributes(self, name: str, attributes: dict[str, Any]) -> None:
        self.ensure_user(name)
        with self.transaction():
            self.db.execute("UPDATE users SET attributes = ? WHERE name = ?", [json.dumps(attributes), name])

    def users(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name").fetchall()]

    # --- user crops ---

    def add_user_crop(
        self,
        user: str,
        content_key: str,
        path: str | None,
        crop: Box,
        source: str,
        weight: float = 1.0,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Record a crop the user made. Idempotent per (user, image content, source); True if new or changed."""
        self.ensure_user(user)
        crop_json = json.dumps(crop.as_list())
        with self.transaction():
            row = self.db.execute(
                "SELECT crop, weight FROM user_crops WHERE user = ? AND content_key = ? AND source = ?",
                [user, content_key, source],
            ).fetchone()
            if row and row[0] == crop_json and abs(float(row[1]) - weight) < 1e-9:
                return False
            self.db.execute(
                "INSERT INTO user_crops (user, content_key, path, crop, source, weight, detail, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(user, content_key, source) DO UPDATE SET"
                " path = excluded.path, crop = excluded.crop, weight = excluded.weight, detail = excluded.detail,"
                " created = excluded.created",
                [
                    user,
                    content_key,
                    _storable(path) if path else None,
                    crop_json,
                    source,
                    weight,
                    json.dumps(detail or {}),
                    time.time(),
                ],
            )
        return True

    def user_crops(self, user: str) -> list[dict[str, Any]]:
        out = []
        for r in self.db.query("SELECT * FROM user_crops WHERE user = ? ORDER BY id", [user]):
            r["crop"] = Box(*json.loads(r["crop"]))
            r["detail"] = json.loads(r["detail"] or "{}")
            out.append(r)
        return out

    # The review page's undo needs to read back and remove one decision (no schema change).

    def user_crop(self, user: str, content_key: str, source: str) -> dict[str, Any] | None:
        """The crop ``user`` recorded for one image content from ``source``, or None."""
        for r in self.db.query(
            "SELECT * FROM user_crops WHERE user = ? AND content_key = ? AND source = ?", [user, content_key, source]
        ):
            r["crop"] = Box(*json.loads(r["crop"]))
            r["detail"] = json.loads(r["detail"] or "{}")
            return r
        return None

    def remove_user_crop(self, user: str, content_key: str, source: str) -> None:
        with self.transaction():
            self.db.execute(
                "DELETE FROM user_crops WHERE user = ? AND content_key = ? AND source = ?", [user, content_key, source]
            )

    # --- model versions ---

    def save_model(self, user: str, data: bytes, metrics: dict[str, Any] | None = None, note: str = "") -> int:
        """Store a new model version for ``user`` and make it the active one. Returns the version number."""
        self.ensure_user(user)
        with self.transaction():
            row = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM models WHERE user = ?", [user]).fetchone()
            version = int(row[0]) + 1
            self.db.execute("UPDATE models SET active = 0 WHERE user = ?", [user])
            self.db.execute(
                "INSERT INTO models (user, version, created, data, metrics, note, active) VALUES (?, ?, ?, ?, ?, ?, 1)",
                [user, version, time.time(), data, json.dumps(metrics or {}), note],
            )
        return version

    def active_model(self, user: str) -> tuple[int, bytes] | None:
        row = self.db.execute(
            "SELECT version, data FROM models WHERE user = ? AND active = 1", [user]
        ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def model_versions(self, user: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT version, created, metrics, note, active FROM models WHERE user = ? ORDER BY version", [user]
        )
        return [{**r, "metrics": json.loads(r["metrics"] or "{}"), "active": bool(r["active"])} for r in rows]

    def activate_model(self, user: str, version: int) -> None:
        """Make ``version`` the active model of ``user`` (roll back or forward). Raises KeyError if unknown."""
        with self.transaction():
            row = self.db.execute("SELECT 1 FROM models WHERE user = ? AND version = ?", [user, version]).fetchone()
            if not row:
                raise KeyError(f"user {user!r} has no model version {version}")
            self.db.execute("UPDATE models SET active = (version = ?) WHERE user = ?", [version, user])


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _decode_suggestion(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["crop"] = Box(*json.loads(row["crop"]))
    row["alternatives"] = json.loads(row["alternatives"] or "[]")
    row["written"] = json.loads(row["written"] or "{}")
    subject = row.get("subject")
    row["subject"] = Box(*json.loads(subject)) if subject else None
    row["subject_kind"] = row.get("subject_kind")
    return row
