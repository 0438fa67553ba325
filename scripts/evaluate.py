#!/usr/bin/env python3
"""Print the README's evaluation tables (DESIGN section 6 protocol, outside-family users, GAICD, timings).

    python scripts/evaluate.py [--users 24] [--quick] [--json FILE]

Everything is measured in this run on the ``test`` split; needs ``../shared/data``. Same as ``pic eval``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pic_plugin.research.evaluation.report import protocol_report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    args = ap.parse_args()
    try:
        text, data = protocol_report(args.users, args.quick, args.cache, log=lambda s: print(s, file=sys.stderr))
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(text)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
