#!/usr/bin/env bash
# Re-create tests/data/digikam-real with the real digiKam 7.9 programs (Debian: showfoto, digikam, xvfb, xdotool,
# imagemagick). GUI automation: the click positions assume this Xvfb screen (1600x1000) and the default Breeze
# layout of showfoto/digiKam 7.9; if a dialog moves, look at the screenshots left in $WORK and adjust.
# Usage: scripts/digikam_real_fixture.sh OUT_DIR   (writes IMG_0001.JPG, IMG_0001_v1.png, IMG_0001_v2.JPG, digikam4.db)
set -euo pipefail
OUT=$(realpath "${1:?output folder}")
WORK=$(mktemp -d /tmp/pic-digikam.XXXXXX)
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT" "$WORK/photos" "$WORK/home" "$WORK/run" "$WORK/coll" "$WORK/db"
chmod 700 "$WORK/run"
export HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/run QTWEBENGINE_DISABLE_SANDBOX=1

"$PY" - "$WORK/photos/IMG_0001.JPG" <<'EOF'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(7)
img = Image.fromarray(rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)).resize((900, 600), Image.NEAREST)
exif = Image.Exif(); exif[0x0112] = 6
img.save(sys.argv[1], quality=95, exif=exif.tobytes())
EOF

# -displayfd: Xvfb picks a free display itself (other sessions sharing /tmp make xvfb-run -a's lock files unsafe).
Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$WORK/display" >/dev/null 2>&1 & XVFB=$!
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; kill "$XVFB" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do [ -s "$WORK/display" ] && break; sleep 0.1; done
export DISPLAY=":$(head -1 "$WORK/display")"
# Screenshots were taken at 1389x868; positions below are in those units and scaled to the real screen.
at() { xdotool mousemove "$(( $1 * 1600 / 1389 ))" "$(( $2 * 1600 / 1389 ))"; }
click() { at "$1" "$2"; xdotool click 1; sleep "${3:-1.5}"; }
drag() { at "$1" "$2"; xdotool mousedown 1; for i in 1 2 3 4 5 6 7 8 9 10; do
           at $(( $1 + ($3 - $1) * i / 10 )) $(( $2 + ($4 - $2) * i / 10 )); sleep 0.1; done; xdotool mouseup 1; sleep 1; }
shot() { import -window root "$WORK/$1.png"; }

showfoto "$WORK/photos/IMG_0001.JPG" >"$WORK/showfoto.log" 2>&1 & PIDS+=($!)
sleep 12; shot sf-start
click 901 496                     # "Download required files" (face models): Cancel
MAIN=$(xdotool search --pid "${PIDS[0]}" --name "Showfoto" | head -1); xdotool windowsize "$MAIN" 1500 950; sleep 1
click 511 811                     # Fit to Window
drag 580 300 860 700              # a selection on the canvas
click 805 36 2                    # Crop to Selection           -> transform:crop
click 706 36 2                    # Rotate Right                -> transform:rotate 90
click 244 9 1; click 293 205 3    # Transform > Aspect Ratio Crop...
click 1165 782 3                  # OK (default 4:3 box)        -> digikam:RatioCrop
click 244 9 1; click 283 73 2     # Transform > Flip Horizontally -> transform:flip
click 390 36 3; xdotool type --delay 50 "IMG_0001_v1.png"; xdotool key Return; sleep 3
click 692 440 4; shot sf-v1       # PNG compression: OK
click 244 9 1; click 261 161 3    # Transform > Resize...
click 1150 300 0.3; xdotool key ctrl+a; xdotool type "50"; xdotool key Tab; sleep 1
click 1165 782 4                  # OK                          -> transform:resize
click 625 36 2                    # Rotate Left                 -> transform:rotate 270
drag 660 430 780 600
click 805 36 2                    # Crop to Selection           -> transform:crop
click 390 36 3; xdotool type --delay 50 "IMG_0001_v2.JPG"; xdotool key Return; sleep 3
click 692 440 4; shot sf-v2       # JPEG quality: OK
kill "${PIDS[0]}"; sleep 2

cp "$WORK"/photos/IMG_0001* "$WORK/coll/"
digikam >"$WORK/digikam1.log" 2>&1 & PIDS+=($!)
sleep 15; shot dk-welcome
click 875 639                     # Welcome: Next
click 717 496 0.3; xdotool key ctrl+a; xdotool type --delay 30 "$WORK/coll"; click 875 639
click 717 554 0.3; xdotool key ctrl+a; xdotool type --delay 30 "$WORK/db"
for _ in 1 2 3 4 5 6 7 8; do click 875 639; done   # the remaining pages keep their defaults; Finish
sleep 10; kill "${PIDS[1]}" 2>/dev/null || true; sleep 2
digikam >"$WORK/digikam2.log" 2>&1 & PIDS+=($!)       # second start: the collection scan fills the database
sleep 25; shot dk-scanned; kill "${PIDS[2]}"; sleep 3

cp "$WORK"/coll/IMG_0001* "$WORK/db/digikam4.db" "$OUT/"
echo "done: $OUT (screenshots and logs in $WORK)"
