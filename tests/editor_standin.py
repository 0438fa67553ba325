"""A simulated editor for the sidecar stress test: saves sidecars every ~1 ms, as darktable does on each edit.

``python editor_standin.py MODE SECONDS FILE...`` (MODE ``rename``: temp file + rename, like darktable and most
editors; ``inplace``: truncate and rewrite the same file). Each save reads the sidecar, checks that its previous
save is still there (the counter ``ed:n``, kept by pic as a foreign property), and writes the next counter. A save
found missing is a lost edit. Prints one JSON line: saves, lost, stale reads, unreadable reads, last counter per file.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

COUNTER = re.compile(rb'ed:n="(\d+)"')
NS = b'xmlns:ed="http://example.com/editor/1.0/"'


def initial(n: int = 0) -> bytes:
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n<rdf:Description rdf:about="" '
            + NS + b' ed:n="' + str(n).encode() + b'"/>\n</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>\n')


def counter(data: bytes) -> int | None:
    m = COUNTER.search(data)
    return int(m.group(1)) if m else None


def save(path: Path, data: bytes, mode: str) -> None:
    if mode == "rename":
        tmp = path.with_name(f".ed-{os.getpid()}-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        with open(path, "wb") as fh:  # O_TRUNC, then the bytes: what an in-place save does
            fh.write(data)


def main() -> None:
    mode, seconds, files = sys.argv[1], float(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    last = {p: counter(p.read_bytes()) or 0 for p in files}
    saves = lost = stale = unreadable = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        path = files[i % len(files)]
        i += 1
        data = path.read_bytes()
        n = counter(data)
        if n is None:
            unreadable += 1  # never expected: pic's writes are atomic and keep the counter
            continue
        if n != last[path]:
            time.sleep(0.005)  # pic may be putting this save back right now: look again once it is done
            data = path.read_bytes()
            n = counter(data)
            if n == last[path]:
                stale += 1  # seen missing for an instant, back in place: nothing lost
            else:
                lost += 1
                print(f"lost: {path.name} has {n}, last save {last[path]}", file=sys.stderr)
            if n is None:
                unreadable += 1
                continue
        last[path] += 1
        save(path, COUNTER.sub(b'ed:n="%d"' % last[path], data, count=1), mode)
        saves += 1
        time.sleep(0.001)
    print(json.dumps({"saves": saves, "lost": lost, "stale": stale, "unreadable": unreadable,
                      "last": {os.fsdecode(p): n for p, n in last.items()}}))


if __name__ == "__main__":
    main()
