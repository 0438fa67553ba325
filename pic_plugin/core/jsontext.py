"""JSON text that is valid UTF-8 for any file name.

A POSIX file name is bytes; Python decodes the bytes that are not UTF-8 to lone surrogates U+DC80..U+DCFF
(``os.fsdecode``, PEP 383). ``json.dumps(..., ensure_ascii=False)`` keeps them as characters, and writing them out
gives raw, invalid UTF-8. ``dumps`` writes each lone surrogate as its JSON escape instead (``\\udce9``): the text is
valid UTF-8 JSON, every other character stays readable, and nothing is lost. To get the name's bytes back:
Python ``os.fsencode(json.loads(line)["path"])``; a parser that replaces lone surrogates (jq, JavaScript's
TextEncoder) turns them into U+FFFD, so use the escape text itself there: ``\\udcXX`` stands for the byte 0xXX.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """``text`` (JSON) with each lone surrogate, which can only be inside a JSON string, as its ``\\uXXXX`` escape."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **kwargs)``, valid UTF-8 for any file name (see the module)."""
    return escape_surrogates(json.dumps(value, ensure_ascii=False, **kwargs))
