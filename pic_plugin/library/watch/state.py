"""What the watcher keeps in the catalog so a restart (even after ``kill -9``) resumes: the work queue, the scan
positions, the last fine-tune, a capped log of problems; plus the lock file that keeps two daemons off one
catalog and the report ``pic status`` prints.

The tables come from the catalog migration ``0002_watch``. Queue rows are deleted only after a photo's results
are committed, so work in flight when the process dies is simply done again (every step is idempotent).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pic_plugin.library.catalog import Catalog

#: Queue priorities: live events before the scan, the scan before refreshes after a fine-tune.
EVENT, SCAN, REFRESH_NEAR, REFRESH = 0, 1, 2, 3
LOG_KEEP = 1000


@dataclass
class QueueItem:
    path: Path
    reason: str
    priority: int
    attempts: int

    @property
    def key(self) -> bytes:
        return os.fsencode(self.path)


class WatchState:
    """The watcher's tables in one catalog; every method is one short transaction on the caller's connection."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self._logged = 0

    # --- queue ---

    def enqueue(self, items: Iterable[tuple[Path, str, int]]) -> int:
        """Add (path, reason, priority) rows; a path already waiting keeps the more urgent priority, and a new
        live event clears its retry back-off. Returns how many rows were given."""
        now = time.time()
        rows = [(os.fsencode(p), reason, prio, 0.0, now) for p, reason, prio in items]
        if not rows:
            return 0
        with self.catalog.transaction():
            self.db.conn.executemany(
                "INSERT INTO watch_queue (path, reason, priority, not_before, queued) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET"
                " reason = CASE WHEN excluded.priority < priority THEN excluded.reason ELSE reason END,"
                " not_before = CASE WHEN excluded.priority = 0 THEN 0 ELSE not_before END,"
                " attempts = CASE WHEN excluded.priority = 0 THEN 0 ELSE attempts END,"
                " priority = MIN(priority, excluded.priority)",
                rows,
            )
        return len(rows)

    def claim(self, limit: int, busy: set[bytes], now: float | None = None) -> list[QueueItem]:
        """Up to ``limit`` items ready to run, most urgent first, skipping those in ``busy`` (in flight)."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT path, reason, priority, attempts FROM watch_queue WHERE not_before <= ?"
            " ORDER BY priority, queued LIMIT ?",
            [now, limit + len(busy)],
        ).fetchall()
        out = []
        for path, reason, priority, attempts in rows:
            if bytes(path) in busy:
                continue
            out.append(QueueItem(Path(os.fsdecode(bytes(path))), reason, int(priority), int(attempts)))
            if len(out) >= limit:
                break
        return out

    def done(self, path: Path) -> None:
        with self.catalog.transaction():
            self.db.execute("DELETE FROM watch_queue WHERE path = ?", [os.fsencode(path)])

    def retry(self, path: Path, error: str | None, delay: float, count: bool = True) -> int:
        """Put an item back for ``delay`` seconds; returns its attempts so far (``count`` false: not an attempt)."""
        with self.catalog.transaction():
            self.db.execute(
                "UPDATE watch_queue SET not_before = ?, error = ?, attempts = attempts + ? WHERE path = ?",
                [time.time() + delay, error, 1 if count else 0, os.fsencode(path)],
            )
            row = self.db.execute("SELECT attempts FROM watch_queue WHERE path = ?", [os.fsencode(path)]).fetchone()
        return int(row[0]) if row else 0

    def next_ready(self) -> float | None:
        row = self.db.execute("SELECT MIN(not_before) FROM watch_queue").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def pending(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM watch_queue").fetchone()[0])

    def pending_by_reason(self) -> dict[str, int]:
        rows = self.db.execute("SELECT reason, COUNT(*) FROM watch_queue GROUP BY reason").fetchall()
        return {r: int(n) for r, n in rows}

    # --- key/value state ---

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM watch_state WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        with self.catalog.transaction():
            self.db.execute(
                "INSERT INTO watch_state (key, value, updated) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                [key, json.dumps(value), time.time()],
            )

    # --- log ---

    def log(self, level: str, message: str, path: Path | str | None = None) -> None:
        text = None if path is None else os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")
        with self.catalog.transaction():
            self.db.execute(
                "INSERT INTO watch_log (time, level, path, message) VALUES (?, ?, ?, ?)",
                [time.time(), level, text, message],
            )
            self._logged += 1
            if self._logged % 100 == 0:
                self.db.execute(
                    "DELETE FROM watch_log WHERE id <= (SELECT MAX(id) FROM watch_log) - ?", [LOG_KEEP]
                )


def recent_log(catalog: Catalog, limit: int = 10, levels: tuple[str, ...] = ("warning", "error")) -> list[dict[str, Any]]:
    marks = ",".join("?" for _ in levels)
    try:
        rows = catalog.db.execute(
            f"SELECT time, level, path, message FROM watch_log WHERE level IN ({marks}) ORDER BY id DESC LIMIT ?",
            [*levels, limit],
        ).fetchall()
    except sqlite3.OperationalError:  # a catalog the watcher never used
        return []
    return [{"time": t, "level": lv, "path": p, "message": m} for t, lv, p, m in rows]


# --- one daemon per catalog ------------------------------------------------------------------------------------


class DaemonRunning(RuntimeError):
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        super().__init__(
            f"a pic watcher (pid {info.get('pid', '?')}) already watches this catalog; stop it first"
        )


def lock_path(catalog_path: Path) -> Path:
    """The daemon's lock/pid file, beside the catalog (the XDG data dir by default)."""
    return Path(os.fspath(catalog_path) + ".watch.lock")


class DaemonLock:
    """An exclusive ``flock`` on the lock file while the daemon runs; the kernel drops it if the process dies,
    so a crash never leaves a stale lock. The file holds the daemon's pid, roots and start time."""

    def __init__(self, catalog_path: Path) -> None:
        self.path = lock_path(catalog_path)
        self._fd: int | None = None

    def acquire(self, info: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonRunning(read_daemon(self.path) or {}) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DaemonLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_daemon(path: Path) -> dict[str, Any] | None:
    """The running daemon's info from a lock file, or None when no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            data = os.read(fd, 1 << 16)
            try:
                info = json.loads(data or b"{}")
            except ValueError:
                info = {}
            return info if isinstance(info, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # we got the lock: nobody holds it
    finally:
        os.close(fd)


# --- pic status ------------------------------------------------------------------------------------------------


def status_report(catalog: Catalog, user: str | None = None) -> dict[str, Any]:
    """Everything ``pic status`` shows, as plain data (also ``--json``)."""
    out: dict[str, Any] = {"catalog": os.fsdecode(catalog.path)}
    out["daemon"] = read_daemon(lock_path(catalog.path)) if str(catalog.path) != ":memory:" else None
    out["images"] = catalog.image_count()
    try:
        state = WatchState(catalog)
        roots = state.get("roots", [])
        for r in roots:
            r["scan"] = state.get(f"scan:{r['path']}", {})
        out["roots"] = roots
        out["queue"] = {"pending": state.pending(), "by_reason": state.pending_by_reason()}
        out["counters"] = state.get("counters", {})
        users = [user] if user else catalog.users()
        out["users"] = {}
        for name in users:
            versions = catalog.model_versions(name)
            active = next((v for v in versions if v["active"]), None)
            out["users"][name] = {
                "crops": len(catalog.user_crops(name)),
                "model_version": active["version"] if active else None,
                "model_created": active["created"] if active else None,
                "last_finetune": state.get(f"finetune:{name}"),
            }
    except sqlite3.OperationalError:  # read-only catalog from before the watcher existed
        out.setdefault("roots", [])
        out.setdefault("queue", {"pending": 0, "by_reason": {}})
    out["problems"] = recent_log(catalog, 5)
    return out
