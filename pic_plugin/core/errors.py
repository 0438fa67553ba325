"""Errors pic reports per file. A batch or the watcher catches ``PicError`` for one file and carries on."""

from __future__ import annotations


class PicError(Exception):
    """A problem with one input (image, sidecar, crop file) that the user can read and act on."""


class DecodeError(PicError):
    """The image could not be read: corrupt, truncated, not an image, unsupported, or too large."""


class SidecarError(PicError):
    """A sidecar could not be read or written safely (hostile XML, unsupported version, concurrent change)."""


class ConcurrentChangeError(SidecarError):
    """The sidecar changed on disk while pic was preparing its update (an editor wrote it): retry later."""


class UnsupportedSidecarError(SidecarError):
    """pic does not write into this sidecar as it is (a version or state it cannot safely extend): the same answer
    until the file changes, so an unchanged photo is not tried again on every run."""


class ReadOnlySidecarError(SidecarError):
    """The sidecar is read-only (the user protected it, or it belongs to someone else): pic leaves it alone."""
