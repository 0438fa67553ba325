"""A ``pic watch`` daemon in a child process, for the kill -9 tests: ``watch_child.py ROOT CATALOG``.

Runs the real sidecar writer/reader when ``pic_plugin.sidecars`` provides them, else the JSON stand-ins.
SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import watch_standins as ws  # noqa: E402

from pic_plugin.catalog import Catalog  # noqa: E402
from pic_plugin.watcher import Watcher, WatchOptions  # noqa: E402


def main() -> None:
    root, catalog_path = Path(sys.argv[1]), Path(sys.argv[2])
    real = len(sys.argv) > 3 and sys.argv[3] == "real"
    kwargs = {} if real else dict(writer=ws.json_writer, crop_finder=ws.json_finder, learner=ws.mean_crop_learner)
    options = WatchOptions(user="me", scorer="mean-crop", quiet=0.2, jobs=2, finetune_delay=0.2, finetune_interval=0)
    with Catalog(catalog_path) as catalog:
        watcher = Watcher([root], options, catalog, **kwargs)  # type: ignore[arg-type]
        signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
        watcher.run(ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    main()
