"""A darktable sidecar's history (FORMATS.md 1.3, 1.5): its entries, ``history_end``, which entries take effect."""

from __future__ import annotations

from dataclasses import dataclass

from pic_plugin.core.errors import SidecarError
from pic_plugin.editors.darktable.params import NS_DT, decode_params
from pic_plugin.editors.xmp import Struct, XmpDocument

# --- history ---------------------------------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    index: int  # position in the document
    num: int | None
    operation: str | None
    enabled: bool
    modversion: int | None
    params_text: str | None
    multi_priority: int
    multi_name: str
    item: Struct
    params: bytes | None = None
    problem: str | None = None  # why darktable would not use this entry

    @property
    def instance(self) -> tuple[str, int]:
        return (self.operation or "", self.multi_priority)


@dataclass
class DarktableHistory:
    xmp_version: int | None
    history_end: int  # as written (not clamped)
    entries: list[HistoryEntry]
    iop_order_version: int | None
    iop_order_list: str | None
    auto_presets_applied: str | None

    @property
    def end(self) -> int:
        """``history_end`` clamped like darktable does."""
        return max(0, min(self.history_end, len(self.entries)))

    def active(self) -> list[HistoryEntry]:
        """The entries darktable replays, in num order (the redo area beyond history_end excluded)."""
        usable = [e for e in self.entries if e.num is not None and e.num < self.end and e.problem is None]
        return sorted(usable, key=lambda e: (e.num, e.index))

    def effective(self) -> dict[tuple[str, int], HistoryEntry]:
        out: dict[tuple[str, int], HistoryEntry] = {}
        for e in self.active():
            out[e.instance] = e
        return out

    def order_position(self, operation: str) -> int | None:
        """Index of ``operation``'s first instance in a custom iop_order_list (None without one)."""
        if not self.iop_order_list:
            return None
        names = self.iop_order_list.split(",")[0::2]
        return names.index(operation) if operation in names else None

    def precedes_crop(self, operation: str) -> bool:
        pos, crop = self.order_position(operation), self.order_position("crop")
        if pos is None or crop is None:
            return True  # every built-in order puts these modules before crop
        return pos < crop


def int_attr(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise SidecarError(f"darktable:{what} is not an integer: {text[:20]!r}") from None


def read_history(doc: XmpDocument) -> DarktableHistory | None:
    """darktable's data in ``doc`` (None when the sidecar holds nothing of darktable's)."""
    version_text = doc.get(NS_DT, "xmp_version")
    items = doc.array_items(NS_DT, "history")
    if version_text is None and items is None:
        return None
    xmp_version = int_attr(version_text, "xmp_version")
    entries: list[HistoryEntry] = []
    for i, li in enumerate(items or []):
        item = Struct(li)
        problem = None
        try:
            num = int_attr(item.get(NS_DT, "num"), "num")
            modversion = int_attr(item.get(NS_DT, "modversion"), "modversion")
            priority = int_attr(item.get(NS_DT, "multi_priority"), "multi_priority") or 0
        except SidecarError as exc:
            num, modversion, priority, problem = None, None, 0, str(exc)
        operation = item.get(NS_DT, "operation")
        params_text = item.get(NS_DT, "params")
        if problem is None and (operation is None or params_text is None or modversion is None):
            problem = "missing operation, params or modversion (darktable then drops the whole history)"
        entry = HistoryEntry(
            index=i,
            num=num if num is not None else (0 if problem is None else None),
            operation=operation,
            enabled=(item.get(NS_DT, "enabled") or "0").strip() == "1",
            modversion=modversion,
            params_text=params_text,
            multi_priority=priority,
            multi_name=item.get(NS_DT, "multi_name") or "",
            item=item,
            problem=problem,
        )
        if params_text is not None and problem is None:
            try:
                entry.params = decode_params(params_text)
            except SidecarError as exc:
                entry.problem = str(exc)
        entries.append(entry)
    end_text = doc.get(NS_DT, "history_end")
    history_end = int_attr(end_text, "history_end") if end_text is not None else len(entries)
    return DarktableHistory(
        xmp_version=xmp_version,
        history_end=history_end if history_end is not None else len(entries),
        entries=entries,
        iop_order_version=int_attr(doc.get(NS_DT, "iop_order_version"), "iop_order_version"),
        iop_order_list=doc.get(NS_DT, "iop_order_list"),
        auto_presets_applied=doc.get(NS_DT, "auto_presets_applied"),
    )


