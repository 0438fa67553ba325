"""The evaluation's tables in Markdown, methods in the README's order."""


from __future__ import annotations

from collections.abc import Sequence

# --- tables ---------------------------------------------------------------------------------------------------

METHOD_LABELS = {
    "centre": "centre crop (favourite ratio)",
    "smartcrop": "smartcrop.py (favourite ratio)",
    "libvips": "libvips attention (favourite ratio)",
    "user-mean": "user-mean geometry",
    "composition": "composition scorer (pic's explicit baseline)",
    "prior": "generic prior",
    "prior+attributes": "prior + profile attributes",
    "rule": "the user's framing rule fitted by pic, alone (no network)",
    "pic": "pic (k=0: prior; k>0: personalized)",
    "oracle-rule": "reference: the user's exact rule on pic's predicted subject",
}


def format_table(table: dict[str, dict[int, dict[str, float]]], ks: Sequence[int], metric: str = "iou") -> str:
    """A markdown table: one row per method, one column per k."""
    head = "| method | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [head, "|---|" + "---:|" * len(ks)]
    for method, by_k in table.items():
        cells = []
        for k in ks:
            m = by_k.get(k)
            cells.append("" if m is None else f"{m[metric]:.3f}")
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_metrics(table: dict[str, dict[int, dict[str, float]]], k: int) -> str:
    """All metrics of every method at one k (k = 0 rows fall back to their k = 0 entry)."""
    lines = [
        "| method | mean IoU | BDE | hit rate (IoU>=0.8) | subject retention | face cuts / photos with faces |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, by_k in table.items():
        m = by_k.get(k) or by_k.get(0)
        if m is None:
            continue
        lines.append(
            f"| {METHOD_LABELS.get(method, method)} | {m['iou']:.3f} | {m['bde']:.3f} | {m['hit']:.3f} | "
            f"{m['retention']:.3f} | {m['face_cuts']} / {m['face_photos']} |"
        )
    return "\n".join(lines)
