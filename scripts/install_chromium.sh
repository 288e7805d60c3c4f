#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/api/test_ui_browser.py drives it with Playwright's Python
# client; Playwright's own browser download is never used). Idempotent and quiet: does nothing when
# /usr/bin/chromium exists; says why when it cannot install (the browser test then skips, saying so).
set -uo pipefail
CHROMIUM=${FLYWHEEL_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium: no apt-get here; install Chromium yourself (the browser test skips without it)" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
log=$(mktemp)
if $SUDO apt-get update -qq >"$log" 2>&1 && \
   DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
  rm -f "$log"
else
  echo "install_chromium: apt-get could not install chromium (log: $log); the browser test will skip" >&2
fi
exit 0
