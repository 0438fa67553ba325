"""The watcher's eyes: one watchdog observer per watched folder (inotify, or polling on network file systems or
when inotify fails), and which folders to watch at all."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pic_plugin.library.scan import SKIP_DIRS

log = logging.getLogger("pic.watch")

#: Filesystems where inotify sees no changes made by other machines: watched by polling.
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "davfs",
     "fuse.sshfs", "sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gvfsd-fuse", "fuse.davfs2"}
)  # fmt: skip


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem ``path`` lives on (from /proc/mounts; None when unknown)."""
    try:
        real = os.path.realpath(path)
        best, kind = "", None
        with open("/proc/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, parts[2]
        return kind
    except OSError:
        return None


def dedupe_roots(roots: Iterable[Path]) -> list[Path]:
    """Absolute roots without duplicates and without roots inside other roots (one observer per tree)."""
    absolute = []
    for r in roots:
        a = Path(os.path.abspath(r))
        if a not in absolute:
            absolute.append(a)
    real = {a: os.path.realpath(a) for a in absolute}
    out: list[Path] = []
    for a in absolute:
        same = any(real[b] == real[a] for b in out)  # the same folder under another name
        inside = any(real[b] != real[a] and real[a].startswith(real[b].rstrip(os.sep) + os.sep) for b in absolute)
        if not same and not inside:
            out.append(a)
    return out


def hidden_or_skipped(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p in SKIP_DIRS for p in parts)



#: (root, watchdog event) -> None; runs in the observer's thread.
EventCallback = Callable[[Path, Any], None]
#: (level, message, path) -> None: how the observers report what went wrong.
ProblemCallback = Callable[[str, str, Path | None], None]


class Handler:
    """watchdog event handler: hands events to the daemon (runs in the observer's thread)."""

    def __init__(self, on_event: EventCallback, root: Path) -> None:
        self.on_event = on_event
        self.root = root

    def dispatch(self, event: Any) -> None:
        try:
            self.on_event(self.root, event)
        except Exception:  # an event must never kill the observer thread
            log.exception("event handling failed")


@dataclass
class WatchedRoot:
    path: Path
    observer: Any = None
    mode: str = "missing"  # inotify | polling | missing
    polling_reason: str = ""

    def alive(self) -> bool:
        obs = self.observer
        return obs is not None and obs.is_alive() and all(e.is_alive() for e in list(obs.emitters))

    def describe(self) -> dict[str, Any]:
        return {"path": os.fsdecode(self.path), "mode": self.mode, "note": self.polling_reason}

    def arm(self, on_event: EventCallback, problem: ProblemCallback, poll: bool, poll_interval: float) -> None:
        """Start observing (inotify unless ``poll``, a network file system, or inotify failing)."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        if not self.path.is_dir():
            self.mode = "missing"
            return
        polling = poll
        reason = "--poll" if polling else ""
        fs = filesystem_type(self.path)
        if not polling and fs in NETWORK_FS:
            polling, reason = True, f"network filesystem ({fs})"
        handler = Handler(on_event, self.path)
        if not polling:
            obs = Observer()
            try:
                obs.schedule(handler, os.fspath(self.path), recursive=True)  # type: ignore[arg-type]
                obs.start()
                self.observer, self.mode, self.polling_reason = obs, "inotify", ""
                return
            except OSError as exc:
                stop_observer(obs)
                polling = True
                reason = f"inotify unavailable: {exc.strerror or exc}"
                if exc.errno == errno.ENOSPC:
                    reason += " (raise fs.inotify.max_user_watches)"
                problem("warning", f"{reason}; polling every {poll_interval:g}s", self.path)
        obs = PollingObserver(timeout=poll_interval)
        try:
            obs.schedule(handler, os.fspath(self.path), recursive=True)  # type: ignore[arg-type]
            obs.start()
        except OSError as exc:
            stop_observer(obs)
            problem("error", f"cannot watch: {exc.strerror or exc}", self.path)
            self.mode = "missing"
            return
        self.observer, self.mode, self.polling_reason = obs, "polling", reason

    def disarm(self) -> None:
        if self.observer is not None:
            stop_observer(self.observer)
            self.observer = None


def stop_observer(obs: Any) -> None:
    try:
        obs.stop()
        if obs.is_alive():
            obs.join(timeout=2)
    except Exception:  # stopping an observer whose folder vanished can raise; it is gone either way
        pass
