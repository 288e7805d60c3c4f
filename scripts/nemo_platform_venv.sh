#!/usr/bin/env bash
# Build the NeMo Platform venv (.venv-nemo) used by the `nemo_platform` test lane.
#
# NeMo Platform needs Python 3.12/3.13; the project itself runs on 3.11, so the platform services live
# in their own venv. Idempotent: a stamp file records the installed spec; re-running is a no-op.
# When no suitable interpreter exists this prints why and exits 0 (the lane then skips).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NEMO_PLATFORM_VENV:-$ROOT/.venv-nemo}"
SPEC="${NEMO_PLATFORM_SPEC:-nemo-platform[all]==0.6.0}"
STAMP="$VENV/.flywheel-installed"

find_python() {
  local c v
  for c in python3.13 python3.12; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] in ((3,12),(3,13))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  for c in "$HOME"/.pyenv/versions/3.13*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python; do
    if [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] in ((3,12),(3,13))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SPEC" ] && [ -x "$VENV/bin/nemo" ]; then
  echo "nemo-platform: $VENV already has $SPEC"
  exit 0
fi

if ! PY="$(find_python)"; then
  echo "nemo-platform: no Python 3.12/3.13 interpreter found (looked for python3.13, python3.12, ~/.pyenv/versions/3.1[23]*); the nemo_platform test lane will skip"
  exit 0
fi

echo "nemo-platform: using $PY ($("$PY" -V 2>&1)) for $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install "$SPEC"
"$VENV/bin/nemo" --help >/dev/null
echo "$SPEC" > "$STAMP"
echo "nemo-platform: installed $SPEC into $VENV"
