# pic for digiKam's Batch Queue Manager: paste this whole text into the "User Shell Script" tool.
#
# Edit the settings below. digiKam replaces the two placeholders at the end (dollar sign + INPUT / OUTPUT) with
# the double-quoted paths everywhere in this text - comments included, so never write them anywhere else - and
# runs it with /bin/sh -c (Linux, macOS). They sit at the very end, after the script has exited: on Linux pic reads
# them from this script's own text (/proc/PID/cmdline of the shell, --bqm-script-of), and the shell, which stops
# at the exit, never parses them, so no file name can run as code (quotes, dollar signs, backticks, backslashes,
# newlines and all). Elsewhere (no /proc) they are a QUOTED here-document, whose body the shell does not expand,
# read by pic from its standard input; there a name holding a line that reads exactly the here-document's end word
# would still end it early. A name containing the text dollar sign + OUTPUT fails: digiKam replaces it too.
#
# MODE=crop      the queue writes pic's crop of each image (exact RATIO), keeping quality, ICC profile and EXIF
# MODE=metadata  the pixels stay as they are; the image's sidecar gets the tag pic/suggested and pic's crop
#                (put this tool first in the queue, so that its input is the album's file, not a temporary copy)
# SIDECAR=ext    IMG.jpg.xmp (digiKam's default); base = IMG.xmp (the "compatible with commercial programs" setting)
# TIMEOUT        digiKam stops a script after 60 s; pic writes the uncropped copy if it is not done after TIMEOUT s

PIC="$HOME/.local/bin/pic"
RATIO=4:5
MODE=crop
SIDECAR=ext
TIMEOUT=45
PIC_USER=

# Find pic by asking it (`pic --version` answers "pic, version ..."): Debian's groff-base installs another program
# named pic (/usr/bin/pic). Not found: a clear message and exit 127, which digiKam 7.9 and 8 count as a failure.
is_pic() { [ -x "$1" ] && "$1" --version 2>/dev/null | head -n 1 | grep -q '^pic, version '; }
if ! is_pic "$PIC"; then
  FOUND=; set -f; OLD_IFS=$IFS; IFS=:
  for DIR in $PATH; do is_pic "${DIR:-.}/pic" && { FOUND="${DIR:-.}/pic"; break; }; done
  IFS=$OLD_IFS; set +f
  [ -n "$FOUND" ] || { echo "pic-bqm.sh: pic (the crop tool) not found: not at $PIC nor on PATH (groff's pic is another program). Install pic or set PIC= at the top of the script." >&2; exit 127; }
  PIC=$FOUND
fi
set -- crop-file --ratio "$RATIO" --mode "$MODE" --sidecar-name "$SIDECAR" --timeout "$TIMEOUT"
[ -n "$PIC_USER" ] && set -- "$@" --user "$PIC_USER"
if [ -r "/proc/$$/cmdline" ]; then "$PIC" "$@" --bqm-script-of "$$"; exit $?; fi
"$PIC" "$@" --bqm-paths - <<'PIC_BQM_PATHS_END'
$INPUT
$OUTPUT
PIC_BQM_PATHS_END
exit $?
