#!/usr/bin/env bash
# Installs the Debian packages given as arguments, once (the Makefile names them:
# espeak-ng and sox to run; chromium, a CJK font and postgresql for the tests).
# Skipped when they are already present, so `make` stays fast and idempotent.
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-system: please install: ${need[*]} (needs root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
